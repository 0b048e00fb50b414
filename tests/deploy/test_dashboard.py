"""The Grafana dashboard and the alerts query only metrics the code exports, read from the live
/metrics of every component run as its own process (over RabbitMQ) and of `--target all`."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from tests.e2e.harness import AMQP_URL, Stack, amqp_problem, running_stack

from .support import ALERTS_FILE, DASHBOARD_FILE, cli_targets, run

_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "inf", "nan", "group_left", "group_right"}
)
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "gauge": ("",),
    "info": ("_info",),
    "untyped": ("",),
}


def metric_names(expr: str) -> set[str]:
    """Returns the metric names a PromQL expression selects (not functions, labels, keywords)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\()?", text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in _KEYWORDS:
            continue
        names.add(name)
    return names


def test_metric_names_are_read_out_of_promql() -> None:
    expr = (
        'histogram_quantile(0.9, sum by (le, service) (rate(avc_x_bucket{a="b",c=~"d|e"}[5m])))'
        " / on (service) group_left avc_y_total > 0 and avc_z or vector(0)"
    )
    assert metric_names(expr) == {"avc_x_bucket", "avc_y_total", "avc_z"}


def dashboard_queries() -> list[tuple[str, str]]:
    """Returns (panel title, expression) for every query of the dashboard."""
    dashboard = json.loads(DASHBOARD_FILE.read_text(encoding="utf-8"))
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def alert_queries() -> list[tuple[str, str]]:
    groups = yaml.safe_load(ALERTS_FILE.read_text())["groups"]
    return [(rule["alert"], rule["expr"]) for group in groups for rule in group["rules"]]


def test_dashboard_has_the_panels_operations_needs() -> None:
    text = " ".join(title.lower() for title, _ in dashboard_queries())
    for words in ("request rate", "latency", "5xx", "uploads in flight", "upload throughput",
                  "encode queue depth", "encode seconds per minute of video", "webhook success",
                  "webhook retries", "rate-limit refusals"):  # fmt: skip
        assert words in text, words
    dashboard = json.loads(DASHBOARD_FILE.read_text(encoding="utf-8"))
    datasources = {
        t["datasource"]["uid"] for p in dashboard["panels"] for t in p.get("targets", [])
    }
    assert datasources == {"avcaption-prometheus"}  # the provisioned datasource's uid


def test_every_dashboard_query_parses(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian package `prometheus`; .ci/run installs it)")
    rules = [
        {"record": f"dashboard:query_{i}", "expr": expr.replace("$__rate_interval", "5m")}
        for i, (_, expr) in enumerate(dashboard_queries())
    ]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    run([promtool, "check", "rules", str(path)])


def exported(text: str) -> set[str]:
    """Returns every series name a /metrics body can have (families with their suffixes)."""
    names = set()
    for family in text_string_to_metric_families(text):
        for suffix in _SUFFIXES.get(family.type, ("",)):
            names.add(family.name + suffix)
        names.update(sample.name for sample in family.samples)
    return names


@pytest.fixture(scope="module")
def live_metrics(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, set[str]]]:
    """target -> the series names its live /metrics exposes."""
    problem = amqp_problem(AMQP_URL)
    if problem is not None:
        pytest.skip(f"RabbitMQ does not answer ({problem})")
    out: dict[str, set[str]] = {}
    with running_stack(tmp_path_factory.mktemp("metrics"), bus_url=AMQP_URL) as stack:
        stack.start_services()
        workers = [
            stack.spawn(w, env=_service_urls(stack)) for w in ("media-worker", "webhooks-worker")
        ]
        for worker in workers:
            worker.wait_ready()
        aio = stack.spawn(
            "all", env={"AVC_BUS_URL": "memory://", "AVC_DATA_DIR": str(stack.root / "aio")}
        )
        aio.wait_ready()
        for name, component in stack.components.items():
            response = httpx.get(f"{component.url}/metrics", timeout=10)
            assert response.status_code == 200, (name, response.status_code)
            assert response.headers["content-type"].startswith("text/plain")
            out[name] = exported(response.text)
        yield out


def _service_urls(stack: Stack) -> dict[str, str]:
    return {
        f"AVC_{name.upper()}_URL": stack.components[name].url
        for name in ("upload", "media", "stats", "webhooks")
    }


def test_every_target_serves_metrics(live_metrics: dict[str, set[str]]) -> None:
    assert set(live_metrics) == cli_targets(), set(live_metrics)
    for target, names in live_metrics.items():
        assert "avc_http_requests_total" in names, target
    print({target: len(names) for target, names in sorted(live_metrics.items())})


def test_dashboard_and_alerts_query_only_exported_metrics(
    live_metrics: dict[str, set[str]],
) -> None:
    separate = set().union(*(names for t, names in live_metrics.items() if t != "all"))
    queried: dict[str, set[str]] = {}
    for title, expr in dashboard_queries() + alert_queries():
        for name in metric_names(expr):
            queried.setdefault(name, set()).add(title)
    assert len(queried) >= 15, queried
    missing = {name: sorted(where) for name, where in queried.items() if name not in separate}
    assert not missing, f"queried but not exported by any component: {missing}"
    # The bus depth comes from RabbitMQ consumers; everything else is in all-in-one mode too.
    all_in_one = live_metrics["all"]
    missing_all = {n for n in queried if n not in all_in_one and not n.startswith("avc_bus_")}
    assert not missing_all, missing_all
    print(f"dashboard + alerts query {len(queried)} metrics, all exported")
