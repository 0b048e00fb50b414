"""The bus port (events between services) and its adapters, picked once from `AVC_BUS_URL`."""

from __future__ import annotations

from urllib.parse import urlsplit

from avc_common.bus.base import (
    Bus,
    BusError,
    DeadLetter,
    Handler,
    PublishFailed,
    Subscription,
)
from avc_common.bus.memory import InMemoryBus
from avc_common.bus.rabbitmq import RabbitBus

SUPPORTED_SCHEMES = ("memory", "amqp", "amqps")


def open_bus(
    url: str, *, exchange: str = "avcaption.events", queue_prefix: str = "avcaption"
) -> Bus:
    """Returns an unstarted bus for `url`: `memory://` (in-process) or `amqp[s]://…` (RabbitMQ)."""
    scheme = urlsplit(url).scheme.lower()
    if scheme == "memory":
        return InMemoryBus(exchange=exchange, queue_prefix=queue_prefix)
    if scheme in ("amqp", "amqps"):
        return RabbitBus(url, exchange=exchange, queue_prefix=queue_prefix)
    raise ValueError(
        f"unsupported bus URL scheme {scheme!r}; supported: "
        + ", ".join(f"{s}://" for s in SUPPORTED_SCHEMES)
    )


__all__ = [
    "SUPPORTED_SCHEMES",
    "Bus",
    "BusError",
    "DeadLetter",
    "Handler",
    "InMemoryBus",
    "PublishFailed",
    "RabbitBus",
    "Subscription",
    "open_bus",
]
