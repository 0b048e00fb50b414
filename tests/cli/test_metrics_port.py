"""`AVC_METRICS_PORT`: `/metrics` moves to its own port; the public port answers 404 for it.

A real `avcaption serve --target all` process: the metrics port shows every component's series
(the embedded services' too), the public port keeps serving the API, and SIGTERM stops both
listeners with exit status 0.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from tests.e2e.harness import free_port, running_stack

pytestmark = pytest.mark.slow


def test_metrics_on_their_own_port(tmp_path: Path) -> None:
    metrics_port = free_port()
    with running_stack(
        tmp_path, bus_url="memory://", extra_env={"AVC_METRICS_PORT": str(metrics_port)}
    ) as stack:
        app = stack.start_all_in_one()
        public = httpx.get(f"{app.url}/metrics", headers={"X-Request-ID": "rid-m1"}, timeout=10)
        assert public.status_code == 404
        assert public.json() == {"error": "Not found.", "code": "not_found", "request_id": "rid-m1"}
        assert public.headers["x-request-id"] == "rid-m1"
        assert httpx.get(f"{app.url}/healthz", timeout=10).status_code == 200

        metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10)
        assert metrics.status_code == 200, metrics.text
        text = metrics.text
        assert 'service="gateway"' in text
        assert "avc_webhook_" in text  # the embedded services' registries too
        assert "avc_http_requests_total" in text
        other = httpx.get(f"http://127.0.0.1:{metrics_port}/api/v1/videos", timeout=10)
        assert other.status_code == 404
        assert other.json()["code"] == "not_found"

        assert stack.stop("all") == 0
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2)


def test_without_the_setting_metrics_stay_on_the_main_port(tmp_path: Path) -> None:
    with running_stack(tmp_path, bus_url="memory://") as stack:
        app = stack.start_all_in_one()
        assert httpx.get(f"{app.url}/metrics", timeout=10).status_code == 200


def test_the_metrics_port_must_differ_from_the_port(tmp_path: Path) -> None:
    import subprocess

    from tests.e2e.harness import avcaption_command, base_env

    port = free_port()
    env = {**base_env(), "AVC_DATA_DIR": str(tmp_path), "AVC_METRICS_PORT": str(port)}
    result = subprocess.run(
        [*avcaption_command(), "serve", "--port", str(port)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "AVC_METRICS_PORT must differ" in result.stderr
