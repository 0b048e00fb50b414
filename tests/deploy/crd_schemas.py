"""JSON schemas of the custom resources the manifests use (prometheus-operator, KEDA).

kubernetes-validate knows only the built-in API; these cover the fields the manifests set, with
the types and required fields of the CRDs (monitoring.coreos.com/v1, keda.sh/v1alpha1), and
reject unknown fields at the levels written here, so a typo does not pass silently.
"""

from __future__ import annotations

from typing import Any, Final

_METADATA: Final = {"type": "object", "required": ["name"]}
_STR: Final = {"type": "string"}
_STR_MAP: Final = {"type": "object", "additionalProperties": {"type": "string"}}
_SELECTOR: Final = {
    "type": "object",
    "properties": {"matchLabels": _STR_MAP},
    "additionalProperties": False,
}


def _object(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": _STR,
            "kind": _STR,
            "metadata": _METADATA,
            "spec": spec,
        },
        "additionalProperties": False,
    }


SERVICE_MONITOR: Final = _object(
    {
        "type": "object",
        "required": ["selector", "endpoints"],
        "additionalProperties": False,
        "properties": {
            "selector": _SELECTOR,
            "namespaceSelector": {"type": "object"},
            "endpoints": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "port": _STR,
                        "path": _STR,
                        "interval": {"type": "string", "pattern": r"^\d+(ms|s|m|h)$"},
                        "relabelings": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "additionalProperties": False,
                                "properties": {
                                    "sourceLabels": {"type": "array", "items": _STR},
                                    "targetLabel": _STR,
                                    "action": _STR,
                                    "regex": _STR,
                                    "replacement": _STR,
                                },
                            },
                        },
                    },
                },
            },
        },
    }
)

PROMETHEUS_RULE: Final = _object(
    {
        "type": "object",
        "required": ["groups"],
        "additionalProperties": False,
        "properties": {
            "groups": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "rules"],
                    "additionalProperties": False,
                    "properties": {
                        "name": _STR,
                        "interval": _STR,
                        "rules": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["alert", "expr"],
                                "additionalProperties": False,
                                "properties": {
                                    "alert": _STR,
                                    "expr": _STR,
                                    "for": {"type": "string", "pattern": r"^\d+(ms|s|m|h)$"},
                                    "labels": _STR_MAP,
                                    "annotations": _STR_MAP,
                                },
                            },
                        },
                    },
                },
            }
        },
    }
)

TRIGGER_AUTHENTICATION: Final = _object(
    {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "secretTargetRef": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["parameter", "name", "key"],
                    "additionalProperties": False,
                    "properties": {"parameter": _STR, "name": _STR, "key": _STR},
                },
            }
        },
    }
)

SCALED_OBJECT: Final = _object(
    {
        "type": "object",
        "required": ["scaleTargetRef", "triggers"],
        "additionalProperties": False,
        "properties": {
            "scaleTargetRef": {
                "type": "object",
                "required": ["name"],
                "additionalProperties": False,
                "properties": {"name": _STR, "kind": _STR, "apiVersion": _STR},
            },
            "minReplicaCount": {"type": "integer", "minimum": 0},
            "maxReplicaCount": {"type": "integer", "minimum": 1},
            "pollingInterval": {"type": "integer", "minimum": 1},
            "cooldownPeriod": {"type": "integer", "minimum": 0},
            "triggers": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "required": ["type", "metadata"],
                    "additionalProperties": False,
                    "properties": {
                        "type": {"enum": ["rabbitmq", "cpu", "memory", "prometheus"]},
                        "metadata": _STR_MAP,
                        "authenticationRef": {
                            "type": "object",
                            "required": ["name"],
                            "properties": {"name": _STR},
                        },
                    },
                },
            },
        },
    }
)

BY_KIND: Final = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): SERVICE_MONITOR,
    ("monitoring.coreos.com/v1", "PrometheusRule"): PROMETHEUS_RULE,
    ("keda.sh/v1alpha1", "TriggerAuthentication"): TRIGGER_AUTHENTICATION,
    ("keda.sh/v1alpha1", "ScaledObject"): SCALED_OBJECT,
}
