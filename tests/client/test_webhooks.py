"""`verify_webhook` on a real delivery of the all-in-one server to a local receiver: accepted
and parsed into its typed event; a tampered body, a wrong secret and a stale timestamp are
refused. (The server allows a loopback http receiver: the test stack sets
AVC_WEBHOOKS_ALLOW_INSECURE=1, as in the other end-to-end tests.)"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from tests.client.conftest import Account, Server, avc_env, eventually, run_avc
from tests.support.videos import make_video

from avcaption_client import Client, WebhookVerificationError, parse_event, verify_webhook
from avcaption_client.webhooks import UnknownEvent, VideoUploaded, ViewThreshold, sign


@dataclass
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[Delivery]]]:
    received: list[Delivery] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            received.append(Delivery(self.path, dict(self.headers.items()), body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{http.server_address[1]}/hook", received
    http.shutdown()
    http.server_close()


def other_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


def test_a_real_delivery_verifies_and_tampering_does_not(
    server: Server, account: Account, receiver: tuple[str, list[Delivery]], tmp_path: Path
) -> None:
    url, received = receiver
    clip = make_video(tmp_path / "hooked.mp4", seconds=1, width=160, height=120)
    with Client(account.api_key, api_url=server.url) as client:
        endpoint = client.create_webhook(url, events=["video.uploaded"], description="client test")
        try:
            uploaded = client.upload(clip)
            eventually(lambda: bool(received), within=60)
        finally:
            client.delete_webhook(endpoint.id)
    assert endpoint.secret.startswith("whsec_")
    delivery = received[0]

    event = verify_webhook(delivery.body, delivery.headers, endpoint.secret)
    assert isinstance(event, VideoUploaded)
    assert event.type == "video.uploaded"
    assert event.data.video_id == uploaded.video_id
    assert event.id == delivery.headers["webhook-id"]
    # Headers in any case; several secrets (rotation) where one matches.
    upper = {k.upper(): v for k, v in delivery.headers.items()}
    assert verify_webhook(delivery.body, upper, [other_secret(), endpoint.secret]).id == event.id

    tampered = delivery.body.replace(uploaded.video_id.encode(), b"vid_someoneelse00000000000")
    assert tampered != delivery.body
    with pytest.raises(WebhookVerificationError) as bad_body:
        verify_webhook(tampered, delivery.headers, endpoint.secret)
    assert bad_body.value.reason == "bad_signature"

    with pytest.raises(WebhookVerificationError) as bad_secret:
        verify_webhook(delivery.body, delivery.headers, other_secret())
    assert bad_secret.value.reason == "bad_signature"

    sent_at = int(delivery.headers["webhook-timestamp"])
    with pytest.raises(WebhookVerificationError) as stale:
        verify_webhook(delivery.body, delivery.headers, endpoint.secret, now=sent_at + 301)
    assert stale.value.reason == "stale_timestamp"
    # Within the tolerance it still passes (a receiver's clock may be a little off).
    verify_webhook(delivery.body, delivery.headers, endpoint.secret, now=sent_at + 299)

    # A timestamp re-written to look fresh breaks the signature.
    replayed = {**delivery.headers, "webhook-timestamp": str(int(time.time()) + 1)}
    with pytest.raises(WebhookVerificationError):
        verify_webhook(delivery.body, replayed, endpoint.secret)


def test_signature_lists_and_missing_headers() -> None:
    secret = other_secret()
    body = json.dumps(
        {
            "id": "evt_1",
            "type": "view.threshold",
            "created_at": "2026-01-01T00:00:00Z",
            "data": {"video_id": "vid_1", "threshold": 100, "views": 100},
        }
    ).encode()
    now = int(time.time())
    good = sign(secret, "evt_1", now, body)
    headers = {
        "webhook-id": "evt_1",
        "webhook-timestamp": str(now),
        "webhook-signature": f"v1,{base64.b64encode(b'x' * 32).decode()} v2,abc {good}",
    }
    event = verify_webhook(body, headers, secret)
    assert isinstance(event, ViewThreshold)
    assert (event.data.threshold, event.data.views) == (100, 100)
    with pytest.raises(WebhookVerificationError) as missing:
        verify_webhook(body, {"webhook-id": "evt_1"}, secret)
    assert missing.value.reason == "missing_headers"


def test_unknown_event_types_parse_to_unknown_event() -> None:
    event = parse_event(b'{"id": "evt_2", "type": "video.teleported", "data": {"x": 1}}')
    assert isinstance(event, UnknownEvent)
    assert event.data == {"x": 1}
    with pytest.raises(WebhookVerificationError):
        parse_event(b"not json")


def test_webhook_commands(
    server: Server, account: Account, receiver: tuple[str, list[Delivery]], tmp_path: Path
) -> None:
    url, received = receiver
    env = avc_env(server, account, tmp_path)
    created = run_avc(
        "webhooks", "create", url, "--event", "video.uploaded", "--json", env=env, cwd=tmp_path
    )
    assert created.returncode == 0, created.stderr
    endpoint = json.loads(created.stdout)
    assert endpoint["secret"].startswith("whsec_")
    listed = json.loads(run_avc("webhooks", "list", "--json", env=env, cwd=tmp_path).stdout)
    assert endpoint["id"] in [w["id"] for w in listed["data"]]

    clip = make_video(tmp_path / "cli-hook.mp4", seconds=1, width=160, height=120)
    assert run_avc("upload", str(clip), env=env, cwd=tmp_path).returncode == 0
    eventually(lambda: bool(received), within=60)

    def delivered() -> list[dict[str, object]]:
        out = run_avc("webhooks", "deliveries", endpoint["id"], "--json", env=env, cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        data: list[dict[str, object]] = json.loads(out.stdout)["data"]
        return data

    eventually(lambda: any(d["status"] == "succeeded" for d in delivered()), within=30)
    delivery = delivered()[0]
    retried = run_avc("webhooks", "retry", str(delivery["id"]), "--json", env=env, cwd=tmp_path)
    assert retried.returncode == 0, retried.stderr
    eventually(lambda: len(received) >= 2, within=30)
    assert received[1].headers["webhook-id"] == received[0].headers["webhook-id"]
    verify_webhook(received[1].body, received[1].headers, endpoint["secret"])

    human = run_avc("webhooks", "deliveries", endpoint["id"], env=env, cwd=tmp_path)
    assert "video.uploaded" in human.stdout
    deleted = run_avc("webhooks", "delete", endpoint["id"], env=env, cwd=tmp_path)
    assert deleted.returncode == 0
    gone = run_avc("webhooks", "delete", endpoint["id"], env=env, cwd=tmp_path)
    assert gone.returncode == 1
    assert "code: not_found" in gone.stderr
    assert "request_id: " in gone.stderr
