"""The AsyncAPI 3 document of the bus, generated from the typed payloads in `avc_common.events`.

`python -m avc_common.asyncapi > docs/asyncapi.yaml` (or `make asyncapi`) writes it; a test fails
when the committed copy differs from what this module builds. Each event type is one channel
(address = routing key = type) on the topic exchange, one message whose payload is the envelope
with `data` pointing at the type's JSON Schema under `components.schemas`. The webhook body has
its schema there too, sharing the same payload schemas.
"""

from __future__ import annotations

import sys
from typing import Any, Final

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from avc_common.events import EVENT_TYPES, PUBLIC_EVENT_TYPES, Event, EventData, WebhookBody

# The contract's version: minor for additive changes (a new field, a new event type), major for
# a breaking one (docs/events.md, "Versioning").
CONTRACT_VERSION: Final = "1.0.0"
DEFAULT_EXCHANGE: Final = "avcaption.events"
AMQP_BINDING_VERSION: Final = "0.3.0"
SCHEMA_REF: Final = "#/components/schemas/{model}"

_DESCRIPTION: Final = """\
The events AVCaption's services publish on RabbitMQ, for internal subscribers.

Every event goes to one durable topic exchange (`AVC_BUS_EXCHANGE`, default `avcaption.events`,
on the vhost of `AVC_BUS_URL`) with the routing key = the event type. Subscribers declare and bind
a durable queue of their own (e.g. `video.*` or `#`). Delivery is at least once: deduplicate on
the envelope's `id`; the order of delivery is not guaranteed. Events tagged `public` mirror the
webhook events (the webhook body's `data` is the same payload); `internal` ones are never sent to
webhooks. Within a major version changes are additive only: ignore fields and event types you do
not know. See docs/events.md."""


def message_key(event_type: str) -> str:
    """Returns the component name of an event type: `video.uploaded` -> `videoUploaded`."""
    first, *rest = event_type.replace("_", ".").split(".")
    return first + "".join(word.capitalize() for word in rest)


def envelope_schema_name(model: type[EventData]) -> str:
    return f"{model.__name__}Event"


def build_document(exchange: str = DEFAULT_EXCHANGE) -> dict[str, Any]:
    """Returns the AsyncAPI 3.0.0 document as plain data (key order is the output's order)."""
    schemas = _schemas()
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for event_type, model in EVENT_TYPES.items():
        key = message_key(event_type)
        visibility = "public" if event_type in PUBLIC_EVENT_TYPES else "internal"
        summary = _summary(model)
        envelope = envelope_schema_name(model)
        schemas[envelope] = _envelope_schema(event_type, model)
        messages[key] = {
            "name": event_type,
            "title": event_type,
            "summary": summary,
            "contentType": "application/json",
            "payload": {"$ref": SCHEMA_REF.format(model=envelope)},
            "tags": [{"name": visibility}],
            "bindings": {
                "amqp": {
                    "messageType": event_type,
                    "bindingVersion": AMQP_BINDING_VERSION,
                }
            },
        }
        channels[key] = {
            "address": event_type,
            "title": event_type,
            "summary": summary,
            "messages": {key: {"$ref": f"#/components/messages/{key}"}},
            "bindings": {"amqp": _channel_binding(exchange)},
        }
        operations[f"publish{key[0].upper()}{key[1:]}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{key}"},
            "summary": f"The platform publishes `{event_type}` ({visibility}).",
            "messages": [{"$ref": f"#/channels/{key}/messages/{key}"}],
            "tags": [{"name": visibility}],
            "bindings": {
                "amqp": {
                    "deliveryMode": 2,
                    "mandatory": False,
                    "bindingVersion": AMQP_BINDING_VERSION,
                }
            },
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "AVCaption events",
            "version": CONTRACT_VERSION,
            "description": _DESCRIPTION,
            "tags": [
                {"name": "public", "description": "Also sent to webhooks, with the same payload."},
                {"name": "internal", "description": "Only on the bus; never sent to webhooks."},
            ],
        },
        "servers": {
            "rabbitmq": {
                "host": "{host}",
                "protocol": "amqp",
                "protocolVersion": "0.9.1",
                "description": "The RabbitMQ of `AVC_BUS_URL`.",
                "variables": {
                    "host": {
                        "default": "localhost:5672",
                        "description": "host:port of `AVC_BUS_URL`",
                    }
                },
            }
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"schemas": dict(sorted(schemas.items())), "messages": messages},
    }


def _schemas() -> dict[str, Any]:
    """Returns the JSON Schema of every payload model, of the generic envelope and of the
    webhook body, keyed by model name (references point into `components.schemas`)."""
    models: list[type[BaseModel]] = [*EVENT_TYPES.values(), Event, WebhookBody]
    _, top = models_json_schema([(m, "serialization") for m in models], ref_template=SCHEMA_REF)
    defs: dict[str, Any] = top["$defs"]
    return {name: _tidy(schema) for name, schema in defs.items()}


def _envelope_schema(event_type: str, model: type[EventData]) -> dict[str, Any]:
    """Returns the envelope specialised to one type: `type` is fixed, `data` is its payload."""
    generic = _tidy(Event.model_json_schema(mode="serialization"))
    properties = dict(generic["properties"])
    properties["type"] = {**properties["type"], "const": event_type}
    properties["data"] = {"$ref": SCHEMA_REF.format(model=model.__name__)}
    return {
        "type": "object",
        "description": f"The bus message of `{event_type}`: the envelope around its payload.",
        "properties": properties,
        "required": generic["required"],
    }


def _channel_binding(exchange: str) -> dict[str, Any]:
    return {
        "is": "routingKey",
        "exchange": {
            "name": exchange,
            "type": "topic",
            "durable": True,
            "autoDelete": False,
            "vhost": "/",
        },
        "bindingVersion": AMQP_BINDING_VERSION,
    }


def _summary(model: type[EventData]) -> str:
    doc = " ".join((model.__doc__ or "").split())
    return doc.split(". ")[0].rstrip(".") + "."


def _tidy(value: Any) -> Any:
    """Returns the schema without pydantic's generated `title`s (noise next to the names), each
    description (a docstring's lines) on one line."""
    if isinstance(value, dict):
        return {
            k: " ".join(v.split()) if k == "description" and isinstance(v, str) else _tidy(v)
            for k, v in value.items()
            if not (k == "title" and isinstance(v, str))
        }
    if isinstance(value, list):
        return [_tidy(v) for v in value]
    return value


def render_yaml(document: dict[str, Any] | None = None) -> str:
    """Returns the document as the YAML text committed in docs/asyncapi.yaml."""
    import yaml

    header = (
        "# Generated by `python -m avc_common.asyncapi` (make asyncapi) from avc_common.events:\n"
        "# do not edit by hand; a test fails when this file and the code differ.\n"
    )

    class Dumper(yaml.SafeDumper):
        """Writes multi-line strings as literal blocks."""

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    body = yaml.dump(
        document if document is not None else build_document(),
        Dumper=Dumper,
        sort_keys=False,
        allow_unicode=True,
        width=100,
    )
    return header + body


def main() -> None:
    sys.stdout.write(render_yaml())


if __name__ == "__main__":
    main()
