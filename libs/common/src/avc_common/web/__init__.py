"""FastAPI plumbing shared by every component: request ids, the public error shape, Prometheus
metrics, health/readiness, and `create_service_app` that wires them together."""

from avc_common.web.app import Lifespan, create_service_app, package_version
from avc_common.web.errors import (
    ErrorBody,
    error_response,
    error_responses,
    install_error_handlers,
)
from avc_common.web.health import (
    ReadinessCheck,
    add_readiness_check,
    check_readiness,
    require_ready,
)
from avc_common.web.lifespan import LifespanError, LifespanManager
from avc_common.web.metrics import expose_registries, metrics_registry
from avc_common.web.request_id import REQUEST_ID_HEADER, current_request_id

__all__ = [
    "REQUEST_ID_HEADER",
    "ErrorBody",
    "Lifespan",
    "LifespanError",
    "LifespanManager",
    "ReadinessCheck",
    "add_readiness_check",
    "check_readiness",
    "create_service_app",
    "current_request_id",
    "error_response",
    "error_responses",
    "expose_registries",
    "install_error_handlers",
    "metrics_registry",
    "package_version",
    "require_ready",
]
