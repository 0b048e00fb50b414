"""docker-compose.yml: schema-valid, every target a real one, every AVC_* a real setting,
health-gated start order, secrets only from .env, every component scraped."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from .support import (
    ALERTS_FILE,
    COMPOSE_FILE,
    DEPLOY,
    ROOT,
    cli_targets,
    deprecated_variables,
    run,
    serve_target,
    setting_variables,
    tool,
)

IMAGE_PREFIX = "avcaption:"
BACKENDS = ("mongodb", "rabbitmq", "minio", "redis")
SCALED = ("media-worker", "webhooks-worker")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    return data


def avcaption_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: svc
        for name, svc in compose["services"].items()
        if str(svc.get("image", "")).startswith(IMAGE_PREFIX)
    }


def test_matches_the_compose_specification_schema() -> None:
    run([tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE_FILE)])


def test_every_target_runs_in_its_own_container(compose: dict[str, Any]) -> None:
    targets = {
        name: serve_target(svc["command"]) for name, svc in avcaption_services(compose).items()
    }
    assert set(targets.values()) == cli_targets() - {"all"}, targets
    for name, target in targets.items():
        assert target in cli_targets(), (name, target)
        assert name == target, "the service is named after its target (Prometheus labels)"
    for backend in BACKENDS:
        assert backend in compose["services"], backend


def test_every_avc_variable_is_a_real_setting(compose: dict[str, Any]) -> None:
    known = setting_variables()
    used = {
        key
        for svc in compose["services"].values()
        for key in (svc.get("environment") or {})
        if key.startswith("AVC_")
    }
    assert used, "no AVC_* variable found"
    assert not used - known, sorted(used - known)
    old_names = used & deprecated_variables()
    assert not old_names, f"renamed settings (the old names only warn now): {sorted(old_names)}"


def test_only_the_gateway_is_published_and_workers_can_be_scaled(compose: dict[str, Any]) -> None:
    services = avcaption_services(compose)
    assert services["gateway"]["ports"] == ["${AVC_GATEWAY_PORT:-8080}:8080"]
    for name, svc in services.items():
        if name != "gateway":
            assert "ports" not in svc, name
        # --scale needs no fixed container name and no published port.
        assert "container_name" not in svc, name
    for name, svc in compose["services"].items():
        for port in svc.get("ports", []):
            if name != "gateway":
                assert str(port).startswith("127.0.0.1:"), (name, port)


def test_start_order_waits_for_health(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, svc in services.items():
        if name == "minio-init":
            continue
        assert "healthcheck" in svc, f"{name} has no health check"
    for name, svc in avcaption_services(compose).items():
        depends = svc.get("depends_on")
        assert isinstance(depends, dict), name
        assert depends, name
        assert "mongodb" in depends, name
        for dep, rule in depends.items():
            expected = (
                "service_completed_successfully" if dep == "minio-init" else "service_healthy"
            )
            assert rule == {"condition": expected}, (name, dep, rule)
    assert set(services["gateway"]["depends_on"]) >= {
        "upload",
        "media",
        "stats",
        "webhooks",
        "redis",
    }
    # Components that store objects wait for the bucket.
    for name in ("upload", "media", "media-worker"):
        assert "minio-init" in services[name]["depends_on"], name


def test_components_run_read_only_without_privileges(compose: dict[str, Any]) -> None:
    for name, svc in avcaption_services(compose).items():
        assert svc["read_only"] is True, name
        assert svc["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in svc["security_opt"], name


def test_state_lives_in_named_volumes(compose: dict[str, Any]) -> None:
    declared = set(compose["volumes"])
    for backend, path in (("mongodb", "/data/db"), ("rabbitmq", "/var/lib/rabbitmq"),
                          ("minio", "/data")):  # fmt: skip
        mounts = compose["services"][backend]["volumes"]
        named = [m.split(":")[0] for m in mounts if m.split(":")[1] == path]
        assert named, (backend, mounts)
        assert named[0] in declared, (backend, mounts)


def _interpolated(compose_text: str) -> set[str]:
    return set(re.findall(r"\$\{([A-Z0-9_]+)", compose_text))


def test_secrets_come_from_the_env_file_only(compose: dict[str, Any]) -> None:
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    secret_words = ("SECRET", "PASSWORD", "PASS", "KEY")
    for svc in compose["services"].values():
        environment = svc.get("environment") or {}
        for key, value in environment.items():
            if any(w in key for w in secret_words) and "PREFIX" not in key:
                assert re.fullmatch(r"\$\{[A-Z0-9_]+(:[?-][^}]*)?\}", str(value)), (key, value)
            for url_key in ("AVC_DATABASE_URL", "AVC_BUS_URL", "AVC_STORAGE_URL",
                            "AVC_RATELIMIT_URL"):  # fmt: skip
                if key == url_key:
                    # user:password parts of the URL are interpolated, never literal.
                    creds = re.match(r"^\w+://([^@]*)@", str(value))
                    assert creds, value
                    assert re.sub(r"\$\{[^}]*\}", "", creds.group(1)) in ("", ":"), value
    example = dict(
        line.split("=", 1)
        for line in (ROOT / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    required = set(re.findall(r"\$\{([A-Z0-9_]+):\?", text))
    assert required <= set(example), sorted(required - set(example))
    for name in _interpolated(text) - {"AVCAPTION_VERSION", "AVC_GATEWAY_PORT"}:
        assert name in example, f"{name} is used by docker-compose.yml but not in .env.example"
    for name, value in example.items():
        if any(w in name for w in ("SECRET", "PASSWORD")):
            assert "insecure-example" in value, f"{name}: an example value must say it is one"
        if name.startswith("AVC_") and name.endswith("_SECRET"):
            assert len(value.encode()) >= 32, name
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()


def test_env_example_settings_are_real(compose: dict[str, Any]) -> None:
    names = [
        line.split("=", 1)[0]
        for line in (ROOT / ".env.example").read_text().splitlines()
        if line.startswith("AVC_")
    ]
    unknown = set(names) - setting_variables() - {"AVC_GATEWAY_PORT"}
    assert not unknown, unknown


def test_prometheus_scrapes_every_component_and_loads_the_alerts(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    config_path = DEPLOY / "compose" / "prometheus" / "prometheus.yml"
    config = yaml.safe_load(config_path.read_text())
    names = {
        name
        for job in config["scrape_configs"]
        for sd in job.get("dns_sd_configs", [])
        for name in sd["names"]
    }
    assert names == set(avcaption_services(compose)), names
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian package `prometheus`; .ci/run installs it)")
    # promtool resolves rule_files on this machine: point it at the repository's copy.
    config["rule_files"] = [str(ALERTS_FILE)]
    local = tmp_path / "prometheus.yml"
    local.write_text(yaml.safe_dump(config))
    run([promtool, "check", "config", str(local)])


def test_grafana_is_provisioned_with_the_dashboard(compose: dict[str, Any]) -> None:
    grafana = compose["services"]["grafana"]
    mounts = {m.split(":")[1]: m.split(":")[0] for m in grafana["volumes"]}
    provisioning = ROOT / mounts["/etc/grafana/provisioning"]
    dashboards = ROOT / mounts["/var/lib/grafana/dashboards"]
    datasource = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
    provider = yaml.safe_load((provisioning / "dashboards" / "avcaption.yaml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    assert (dashboards / "avcaption.json").exists()
    assert "AVC_RATELIMIT_KEY_PREFIX" in compose["services"]["gateway"]["environment"]
