"""JSON schemas for the two Prometheus Operator objects the manifests use.

kubernetes-validate knows only built-in kinds: for ``monitoring.coreos.com/v1``
ServiceMonitor and PodMonitor it finds no schema and merely warns. These schemas are a
hand-written, strict subset of the CRDs' ``openAPIV3Schema`` (prometheus-operator v0.84):
the fields, types and patterns of everything these manifests may use, and
``additionalProperties: false`` everywhere, so a misspelt or invented field fails like
``kubernetes-validate --strict`` would fail it on a built-in kind. A field outside the
subset must be added here from the CRD before a manifest can use it.
"""

from __future__ import annotations

from typing import Any

#: The CRD's pattern for ``interval`` and ``scrapeTimeout`` (a Prometheus duration).
DURATION = (
    r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
)


def _closed(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}

_LABEL_SELECTOR = _closed(
    {
        "matchLabels": _STRING_MAP,
        "matchExpressions": {
            "type": "array",
            "items": _closed(
                {
                    "key": {"type": "string"},
                    "operator": {"type": "string"},
                    "values": {"type": "array", "items": {"type": "string"}},
                },
                ("key", "operator"),
            ),
        },
    }
)

_NAMESPACE_SELECTOR = _closed(
    {"any": {"type": "boolean"}, "matchNames": {"type": "array", "items": {"type": "string"}}}
)

_ENDPOINT = _closed(
    {
        "port": {"type": "string"},
        "path": {"type": "string"},
        "scheme": {"type": "string", "enum": ["http", "https", "HTTP", "HTTPS"]},
        "interval": {"type": "string", "pattern": DURATION},
        "scrapeTimeout": {"type": "string", "pattern": DURATION},
        "honorLabels": {"type": "boolean"},
    }
)

_METADATA = _closed(
    {
        "name": {"type": "string"},
        "namespace": {"type": "string"},
        "labels": _STRING_MAP,
        "annotations": _STRING_MAP,
    },
    ("name",),
)


def _monitor(kind: str, endpoints_field: str) -> dict[str, Any]:
    spec = _closed(
        {
            "selector": _LABEL_SELECTOR,
            "namespaceSelector": _NAMESPACE_SELECTOR,
            "jobLabel": {"type": "string"},
            endpoints_field: {"type": "array", "minItems": 1, "items": _ENDPOINT},
        },
        ("selector", endpoints_field),
    )
    return _closed(
        {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "kind": {"const": kind},
            "metadata": _METADATA,
            "spec": spec,
        },
        ("apiVersion", "kind", "metadata", "spec"),
    )


SCHEMAS: dict[str, dict[str, Any]] = {
    "ServiceMonitor": _monitor("ServiceMonitor", "endpoints"),
    "PodMonitor": _monitor("PodMonitor", "podMetricsEndpoints"),
}
