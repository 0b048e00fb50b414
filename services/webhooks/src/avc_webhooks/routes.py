"""`/api/v1/webhooks…` (Enterprise): thin, the work is in service.py.

The gateway already answers 403 `plan_required` to other plans; the check is repeated here so
that a mistake there does not open the feature.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status

from avc_common.errors import (
    BadRequest,
    PayloadTooLarge,
    PlanRequired,
    Unauthorized,
    ValidationFailed,
)
from avc_common.internal_auth import Caller, CurrentCaller
from avc_common.timeutil import to_rfc3339, utcnow
from avc_common.web import error_responses
from avc_common.web.body import body_schema, parse_body
from avc_webhooks.errors import (
    DeliveryInProgress,
    DeliveryNotFound,
    InvalidWebhookUrl,
    WebhookDisabled,
    WebhookLimitReached,
    WebhookNotFound,
)
from avc_webhooks.repository import Attempt, Delivery, DeliveryStatus, Endpoint
from avc_webhooks.schemas import (
    AttemptOut,
    DeliveryOut,
    DeliveryPage,
    EndpointCreate,
    EndpointCreated,
    EndpointOut,
    EndpointPage,
    EndpointUpdate,
)
from avc_webhooks.service import WebhookService

router = APIRouter(tags=["webhooks"])


async def _enterprise(caller: CurrentCaller) -> Caller:
    if caller.plan != "enterprise":
        raise PlanRequired("Webhooks need the enterprise plan.")
    return caller


def _service(request: Request) -> WebhookService:
    service: WebhookService = request.app.state.webhook_service
    return service


EnterpriseCaller = Annotated[Caller, Depends(_enterprise)]
Webhooks = Annotated[WebhookService, Depends(_service)]
PageNumber = Annotated[int, Query(ge=1, le=1_000_000)]
PerPage = Annotated[int, Query(ge=1, le=100)]
_AUTH = (Unauthorized, PlanRequired)
_BODY = (BadRequest, PayloadTooLarge, ValidationFailed)


@router.post(
    "/api/v1/webhooks",
    status_code=status.HTTP_201_CREATED,
    response_model=EndpointCreated,
    summary="Create a webhook endpoint; its signing secret is shown this once",
    openapi_extra=body_schema(EndpointCreate),
    responses=error_responses(*_AUTH, *_BODY, InvalidWebhookUrl, WebhookLimitReached),
)
async def create_webhook(
    request: Request, caller: EnterpriseCaller, webhooks: Webhooks
) -> EndpointCreated:
    body = await parse_body(request, EndpointCreate)
    endpoint = await webhooks.create_endpoint(
        account_id=caller.account_id,
        url=body.url,
        events=body.events,
        description=body.description,
    )
    return EndpointCreated(**_endpoint(endpoint).model_dump(), secret=endpoint.secret)


@router.get(
    "/api/v1/webhooks",
    response_model=EndpointPage,
    summary="The account's webhook endpoints, newest first",
    responses=error_responses(*_AUTH, ValidationFailed),
)
async def list_webhooks(
    caller: EnterpriseCaller, webhooks: Webhooks, page: PageNumber = 1, per_page: PerPage = 20
) -> EndpointPage:
    found = await webhooks.list_endpoints(
        account_id=caller.account_id, page=page, per_page=per_page
    )
    return EndpointPage(
        data=[_endpoint(e) for e in found.data],
        page=found.page,
        per_page=found.per_page,
        total=found.total,
        total_pages=found.total_pages,
    )


@router.get(
    "/api/v1/webhooks/{webhook_id}",
    response_model=EndpointOut,
    summary="One webhook endpoint (never its secret)",
    responses=error_responses(*_AUTH, WebhookNotFound),
)
async def get_webhook(webhook_id: str, caller: EnterpriseCaller, webhooks: Webhooks) -> EndpointOut:
    endpoint = await webhooks.get_endpoint(account_id=caller.account_id, endpoint_id=webhook_id)
    return _endpoint(endpoint)


@router.put(
    "/api/v1/webhooks/{webhook_id}",
    response_model=EndpointOut,
    summary="Change any of url, events, enabled, description",
    openapi_extra=body_schema(EndpointUpdate),
    responses=error_responses(*_AUTH, *_BODY, WebhookNotFound, InvalidWebhookUrl),
)
async def update_webhook(
    webhook_id: str, request: Request, caller: EnterpriseCaller, webhooks: Webhooks
) -> EndpointOut:
    body = await parse_body(request, EndpointUpdate)
    endpoint = await webhooks.update_endpoint(
        account_id=caller.account_id, endpoint_id=webhook_id, changes=body.changes(utcnow())
    )
    return _endpoint(endpoint)


@router.delete(
    "/api/v1/webhooks/{webhook_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Delete a webhook endpoint and its deliveries",
    responses=error_responses(*_AUTH, WebhookNotFound),
)
async def delete_webhook(webhook_id: str, caller: EnterpriseCaller, webhooks: Webhooks) -> Response:
    await webhooks.delete_endpoint(account_id=caller.account_id, endpoint_id=webhook_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/api/v1/webhooks/{webhook_id}/deliveries",
    response_model=DeliveryPage,
    summary="The endpoint's deliveries with every attempt, newest first",
    responses=error_responses(*_AUTH, WebhookNotFound, ValidationFailed),
)
async def list_deliveries(
    webhook_id: str,
    caller: EnterpriseCaller,
    webhooks: Webhooks,
    page: PageNumber = 1,
    per_page: PerPage = 20,
) -> DeliveryPage:
    found = await webhooks.list_deliveries(
        account_id=caller.account_id, endpoint_id=webhook_id, page=page, per_page=per_page
    )
    return DeliveryPage(
        data=[_delivery(d) for d in found.data],
        page=found.page,
        per_page=found.per_page,
        total=found.total,
        total_pages=found.total_pages,
    )


@router.post(
    "/api/v1/webhooks/deliveries/{delivery_id}/retry",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=DeliveryOut,
    summary="Send a delivery again now (its retry schedule starts over)",
    responses=error_responses(*_AUTH, DeliveryNotFound, DeliveryInProgress, WebhookDisabled),
)
async def retry_delivery(
    delivery_id: str, caller: EnterpriseCaller, webhooks: Webhooks
) -> DeliveryOut:
    delivery = await webhooks.retry_delivery(account_id=caller.account_id, delivery_id=delivery_id)
    return _delivery(delivery)


def _endpoint(endpoint: Endpoint) -> EndpointOut:
    return EndpointOut(
        id=endpoint.id,
        url=endpoint.url,
        events=endpoint.events,
        enabled=endpoint.enabled,
        description=endpoint.description,
        disabled_reason=endpoint.disabled_reason,
        created_at=to_rfc3339(endpoint.created_at),
        updated_at=to_rfc3339(endpoint.updated_at),
    )


def _delivery(delivery: Delivery) -> DeliveryOut:
    return DeliveryOut(
        id=delivery.id,
        webhook_id=delivery.endpoint_id,
        event_id=delivery.event_id,
        event_type=delivery.event_type,
        status=delivery.status,
        attempts=delivery.attempts,
        last_status_code=delivery.last_status_code,
        last_error=delivery.last_error,
        next_attempt_at=(
            to_rfc3339(delivery.next_attempt_at)
            if delivery.status is DeliveryStatus.PENDING and delivery.next_attempt_at
            else None
        ),
        created_at=to_rfc3339(delivery.created_at),
        updated_at=to_rfc3339(delivery.updated_at),
        delivered_at=to_rfc3339(delivery.delivered_at) if delivery.delivered_at else None,
        attempt_log=[_attempt(entry) for entry in delivery.attempt_log],
    )


def _attempt(attempt: Attempt) -> AttemptOut:
    return AttemptOut(
        attempt=attempt.attempt,
        started_at=to_rfc3339(attempt.started_at),
        duration_ms=attempt.duration_ms,
        outcome=attempt.outcome,
        status_code=attempt.status_code,
        error=attempt.error,
        response_body=attempt.response_body,
        retry_after_seconds=attempt.retry_after_seconds,
    )
