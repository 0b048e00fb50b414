"""The webhooks service's own error codes (rendered in the public error shape)."""

from __future__ import annotations

from avc_common.errors import Conflict, NotFound, ValidationFailed


class InvalidWebhookUrl(ValidationFailed):
    code = "invalid_webhook_url"
    default_message = "The webhook URL is not allowed."


class WebhookNotFound(NotFound):
    default_message = "Webhook not found."


class DeliveryNotFound(NotFound):
    default_message = "Delivery not found."


class DeliveryInProgress(Conflict):
    code = "delivery_in_progress"
    default_message = "This delivery is being sent right now; retry it once that attempt ends."


class WebhookDisabled(Conflict):
    code = "webhook_disabled"
    default_message = "The webhook is disabled; enable it before retrying its deliveries."


class WebhookLimitReached(Conflict):
    code = "webhook_limit_reached"
    default_message = "The account has as many webhooks as it may have."
