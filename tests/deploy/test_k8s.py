"""deploy/k8s: both overlays render (kubectl's built-in kustomize), every object validates
against its schema, checkov leaves no failure without a written reason, and the manifests say
what the issue asks (targets, settings, probes, security, network, scaling, alerts)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from avc_common.config import Settings

from .crd_schemas import BY_KIND
from .support import (
    ALERTS_FILE,
    CHECKOV,
    K8S,
    OVERLAYS,
    cli_targets,
    deprecated_variables,
    of_kind,
    rendered,
    run,
    serve_target,
    setting_variables,
)

KUBERNETES_VERSION = "1.30.0"  # the oldest version the manifests promise to work on
SERVICES = ("upload", "media", "stats", "webhooks")
# The media worker's queue (without the prefix); tests/reliability/test_media_worker_killed.py
# checks on a live worker that this is the queue it consumes.
ENCODE_QUEUE = "media.encode"
WORKERS = ("media-worker", "webhooks-worker")
Objects = tuple[dict[str, Any], ...]


def containers(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    spec: list[dict[str, Any]] = deployment["spec"]["template"]["spec"]["containers"]
    return spec


def by_name(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_every_kind(overlay: str) -> None:
    kinds = {o["kind"] for o in rendered(overlay)}
    expected = {"Namespace", "ServiceAccount", "ConfigMap", "Deployment", "Service",
                "PodDisruptionBudget", "NetworkPolicy", "Ingress", "ServiceMonitor",
                "PrometheusRule"}  # fmt: skip
    assert expected <= kinds, expected - kinds
    if overlay == "prod":
        assert {"HorizontalPodAutoscaler", "ScaledObject", "TriggerAuthentication"} <= kinds
    else:
        assert "Secret" in kinds  # generated from dev-secrets.env
    namespaces = {
        o["metadata"].get("namespace") for o in rendered(overlay) if o["kind"] != "Namespace"
    }
    assert len(namespaces) == 1, namespaces
    assert None not in namespaces, namespaces


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_validates_against_its_schema(overlay: str) -> None:
    checked: dict[str, int] = {}
    for obj in rendered(overlay):
        crd = BY_KIND.get((obj["apiVersion"], obj["kind"]))
        if crd is not None:
            jsonschema.validate(obj, crd)
        else:
            # strict: unknown fields are errors too. SchemaNotFoundError fails the test.
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        checked[obj["kind"]] = checked.get(obj["kind"], 0) + 1
    print(f"{overlay}: validated {sum(checked.values())} objects {checked}")


def test_a_wrong_field_is_caught_by_the_schemas() -> None:
    deployment = json.loads(json.dumps(of_kind(rendered("dev"), "Deployment")[0]))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["paht"] = (
        "/"
    )
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)
    scaled = json.loads(json.dumps(of_kind(rendered("prod"), "ScaledObject")[0]))
    scaled["spec"]["minReplicas"] = 1
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(scaled, BY_KIND[("keda.sh/v1alpha1", "ScaledObject")])


def test_checkov_leaves_no_failure_without_a_written_reason(tmp_path: Path) -> None:
    if not CHECKOV.exists():
        pytest.skip(f"checkov is not installed ({CHECKOV}): `make deploy-tools`; .ci/run does")
    for overlay in OVERLAYS:
        out = tmp_path / f"{overlay}.yaml"
        out.write_text("---\n".join(yaml.safe_dump(o) for o in rendered(overlay)))
    result = run(
        [str(CHECKOV), "-d", str(tmp_path), "--framework", "kubernetes", "--skip-download",
         "--compact", "-o", "json"],
        check=False,
    )  # fmt: skip
    report = json.loads(result.stdout)
    failed = [(f["check_id"], f["resource"]) for f in report["results"]["failed_checks"]]
    skipped = report["results"]["skipped_checks"]
    print(f"checkov: {report['summary']}")
    assert failed == [], failed
    assert report["summary"]["passed"] > 500, report["summary"]
    reasons = {s["check_id"]: str(s["check_result"].get("suppress_comment", "")) for s in skipped}
    print(f"checkov skips: {reasons}")
    unexplained = [check for check, reason in reasons.items() if len(reason) < 20]
    assert not unexplained, unexplained
    assert {s["check_id"] for s in skipped} <= {"CKV_K8S_43", "CKV_K8S_35"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_target_is_a_cli_target_and_every_setting_is_real(overlay: str) -> None:
    objects = rendered(overlay)
    deployments = by_name(of_kind(objects, "Deployment"))
    targets = {name: serve_target(containers(d)[0]["args"]) for name, d in deployments.items()}
    assert set(targets.values()) == cli_targets() - {"all"}, targets
    assert all(name == target for name, target in targets.items()), targets
    known = setting_variables()
    used = {
        e["name"] for d in deployments.values() for c in containers(d) for e in c.get("env", [])
    }
    for config in of_kind(objects, "ConfigMap"):
        used |= set(config["data"])
    unknown = {v for v in used if v.startswith("AVC_")} - known
    assert not unknown, unknown
    old_names = used & deprecated_variables()
    assert not old_names, f"renamed settings (the old names only warn now): {sorted(old_names)}"
    assert not {v for v in used if not v.startswith("AVC_")}, used


def test_dev_secret_has_every_key_the_manifests_reference() -> None:
    objects = rendered("dev")
    secret = of_kind(objects, "Secret")[0]
    assert secret["metadata"]["name"] == "avcaption-secrets"
    referenced = {
        e["valueFrom"]["secretKeyRef"]["key"]
        for d in of_kind(objects, "Deployment")
        for c in containers(d)
        for e in c.get("env", [])
        if "valueFrom" in e
    }
    referenced |= {
        ref["key"]
        for t in of_kind(rendered("prod"), "TriggerAuthentication")
        for ref in t["spec"]["secretTargetRef"]
    }
    assert referenced <= set(secret["data"]), referenced - set(secret["data"])


def test_the_documented_secret_command_creates_every_key() -> None:
    docs = (K8S.parents[1] / "docs" / "operations.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"--from-literal=([a-z-]+)=", docs))
    generated = set(of_kind(rendered("dev"), "Secret")[0]["data"])
    assert documented == generated, documented ^ generated


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_are_locked_down_and_probed(overlay: str) -> None:
    for deployment in of_kind(rendered(overlay), "Deployment"):
        name = deployment["metadata"]["name"]
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["automountServiceAccountToken"] is False, name
        for container in containers(deployment):
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["capabilities"]["drop"] == ["ALL"], name
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", name
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", name
            assert {"cpu", "memory"} <= set(container["resources"]["requests"]), name
            assert "memory" in container["resources"]["limits"], name
            # Scratch on emptyDir: the root filesystem is read-only.
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            volumes = {v["name"]: v for v in pod["volumes"]}
            assert "emptyDir" in volumes[mounts["/tmp"]], name
            if name == "media-worker":
                scratch = volumes[mounts["/var/lib/avcaption/scratch"]]
                assert "sizeLimit" in scratch["emptyDir"], name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_component_has_a_service_and_a_pdb(overlay: str) -> None:
    objects = rendered(overlay)
    names = set(by_name(of_kind(objects, "Deployment")))
    assert set(by_name(of_kind(objects, "Service"))) == names
    assert set(by_name(of_kind(objects, "PodDisruptionBudget"))) == names
    for service in of_kind(objects, "Service"):
        assert service["spec"]["type"] == "ClusterIP"


def _allowed_sources(objects: Objects, component: str) -> list[Any]:
    """Returns the `from` lists of every policy that selects the component's pods."""
    sources = []
    for policy in of_kind(objects, "NetworkPolicy"):
        labels = policy["spec"]["podSelector"].get("matchLabels", {})
        component_label = labels.get("app.kubernetes.io/component")
        if component_label not in (None, component):
            continue
        for rule in policy["spec"].get("ingress", []):
            sources.append(rule.get("from"))
    return sources


def test_network_policy_only_the_gateway_takes_outside_traffic() -> None:
    objects = rendered("prod")
    policies = by_name(of_kind(objects, "NetworkPolicy"))
    deny = policies["default-deny-ingress"]["spec"]
    assert deny["policyTypes"] == ["Ingress"]
    assert "ingress" not in deny
    monitoring = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
    }
    assert [s for s in _allowed_sources(objects, "gateway") if s != [monitoring]] == [None]
    gateway_labels = {
        "app.kubernetes.io/name": "avcaption",
        "app.kubernetes.io/component": "gateway",
    }
    gateway = {"podSelector": {"matchLabels": gateway_labels}}
    for service in SERVICES:
        sources = [s for s in _allowed_sources(objects, service) if s != [monitoring]]
        assert sources, service
        assert all(s is not None and gateway in s for s in sources), (service, sources)
    for worker in WORKERS:
        assert [s for s in _allowed_sources(objects, worker) if s != [monitoring]] == [], worker


def test_ingress_routes_to_the_gateway_with_an_upload_sized_body_limit() -> None:
    for overlay in OVERLAYS:
        ingress = of_kind(rendered(overlay), "Ingress")[0]
        backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
        assert backend["name"] == "gateway"
        annotations = ingress["metadata"]["annotations"]
        size = annotations["nginx.ingress.kubernetes.io/proxy-body-size"]
        assert re.fullmatch(r"\d+m", size)
        # A direct upload up to AVC_UPLOAD_DIRECT_MAX_BYTES (200 MiB) plus its multipart framing.
        assert int(size[:-1]) * 1024 * 1024 > 200 * 1024 * 1024
        assert annotations["nginx.ingress.kubernetes.io/proxy-request-buffering"] == "off"
    assert "tls" in of_kind(rendered("prod"), "Ingress")[0]["spec"]


def test_dev_runs_one_replica_of_each_and_prod_scales() -> None:
    assert {d["spec"]["replicas"] for d in of_kind(rendered("dev"), "Deployment")} == {1}
    prod = rendered("prod")
    hpas = by_name(of_kind(prod, "HorizontalPodAutoscaler"))
    assert set(hpas) == {"gateway", "upload"}
    for name, hpa in hpas.items():
        assert hpa["spec"]["scaleTargetRef"]["name"] == name
        assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    replicas = {d["metadata"]["name"]: d["spec"]["replicas"] for d in of_kind(prod, "Deployment")}
    assert replicas["gateway"] >= 2, replicas
    assert replicas["upload"] >= 2, replicas


def test_keda_scales_media_workers_on_the_encode_queue() -> None:
    scaled = of_kind(rendered("prod"), "ScaledObject")
    assert len(scaled) == 1
    spec = scaled[0]["spec"]
    assert spec["scaleTargetRef"]["name"] == "media-worker"
    trigger = spec["triggers"][0]
    prefix = Settings().bus_queue_prefix
    config = of_kind(rendered("prod"), "ConfigMap")[0]["data"]
    assert config.get("AVC_BUS_QUEUE_PREFIX", prefix) == prefix
    assert trigger["type"] == "rabbitmq"
    assert trigger["metadata"]["queueName"] == f"{prefix}.{ENCODE_QUEUE}"
    assert trigger["metadata"]["mode"] == "QueueLength"


def test_prometheus_rule_holds_the_alerts_file() -> None:
    expected = yaml.safe_load(ALERTS_FILE.read_text())
    for overlay in OVERLAYS:
        rule = of_kind(rendered(overlay), "PrometheusRule")[0]
        assert rule["spec"] == expected
    monitor = of_kind(rendered("prod"), "ServiceMonitor")[0]
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    assert monitor["spec"]["endpoints"][0]["port"] == "http"


def test_every_alert_has_a_runbook_section() -> None:
    docs = (K8S.parents[1] / "docs" / "operations.md").read_text(encoding="utf-8")
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in docs.splitlines()
        if line.startswith("#")
    }
    alerts = yaml.safe_load(ALERTS_FILE.read_text())["groups"][0]["rules"]
    assert len(alerts) >= 6
    for alert in alerts:
        runbook = alert["annotations"]["runbook"]
        assert runbook == f"docs/operations.md#{alert['alert'].lower()}", runbook
        assert alert["alert"].lower() in anchors, f"no section `### {alert['alert']}` in docs"
        assert alert["labels"]["severity"] in ("warning", "critical")


def test_promtool_accepts_the_rules_and_their_unit_tests() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian package `prometheus`; .ci/run installs it)")
    checked = run([promtool, "check", "rules", str(ALERTS_FILE)])
    assert "SUCCESS" in checked.stdout + checked.stderr
    tests = ALERTS_FILE.with_name("alerts_test.yml")
    result = run([promtool, "test", "rules", str(tests)], cwd=tests.parent)
    assert "SUCCESS" in result.stdout + result.stderr
