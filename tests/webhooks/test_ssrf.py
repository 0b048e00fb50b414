"""SSRF safety: which addresses are refused, at create time and at send time (no connection
made), and that connections go to the checked address with SNI/Host/TLS for the host name."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from hypothesis import given
from hypothesis import strategies as st
from tests.support.assertions import assert_error, eventually

from avc_common.config import Settings
from avc_common.events import ErrorInfo, Event, VideoFailed
from avc_webhooks.ssrf import (
    PinnedTransport,
    UrlPolicy,
    UrlRefused,
    blocked_reason,
    client_ssl_context,
    parse_address,
)

from .conftest import (
    HOST,
    PUBLIC_IP,
    Receiver,
    WebhooksHarness,
    auth,
    ipv6_loopback_available,
    receiver_settings,
    static_resolver,
    webhooks_app,
)

BLOCKED = [
    "127.0.0.1",
    "127.8.9.10",
    "10.0.0.1",
    "172.16.5.4",
    "192.168.1.1",
    "169.254.169.254",
    "100.64.0.1",
    "100.127.255.254",
    "0.0.0.0",
    "0.1.2.3",
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    "192.0.2.10",
    "198.18.0.1",
    "192.0.0.8",
    "::",
    "::1",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "::127.0.0.1",
    "64:ff9b::7f00:1",
    "64:ff9b::a9fe:a9fe",
    "2002:7f00:1::1",
    "2002:a00:1::",
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",
    "fc00::1",
    "fd12:3456::1",
    "fe80::1",
    "fec0::1",
    "ff02::1",
    "2001:db8::1",
    "100::1",
]
ALLOWED = [
    "93.184.216.34",
    "8.8.8.8",
    "1.1.1.1",
    "2606:4700:4700::1111",
    "64:ff9b::808:808",
    "2002:808:808::1",
]


@pytest.mark.parametrize("address", BLOCKED)
def test_private_and_special_addresses_are_refused(address: str) -> None:
    assert blocked_reason(parse_address(address)) is not None


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_pass(address: str) -> None:
    assert blocked_reason(parse_address(address)) is None


@given(
    st.ip_addresses(v=4, network="10.0.0.0/8")
    | st.ip_addresses(v=4, network="127.0.0.0/8")
    | st.ip_addresses(v=4, network="169.254.0.0/16")
    | st.ip_addresses(v=4, network="100.64.0.0/10")
    | st.ip_addresses(v=4, network="192.168.0.0/16")
    | st.ip_addresses(v=4, network="172.16.0.0/12")
)
def test_private_ipv4_also_inside_ipv6_forms(address: ipaddress.IPv4Address) -> None:
    assert blocked_reason(address) is not None
    mapped = ipaddress.IPv6Address(f"::ffff:{address}")
    assert blocked_reason(mapped) is not None
    nat64 = ipaddress.IPv6Address(int(ipaddress.IPv6Address("64:ff9b::")) | int(address))
    assert blocked_reason(nat64) is not None
    sixtofour = ipaddress.IPv6Address((0x2002 << 112) | (int(address) << 80))
    assert blocked_reason(sixtofour) is not None


async def test_policy_checks_every_resolved_address() -> None:
    policy = UrlPolicy(resolver=static_resolver({"mixed.test": [PUBLIC_IP, "10.1.2.3"]}))
    with pytest.raises(UrlRefused) as refused:
        await policy.check("https://mixed.test/")
    assert "10.1.2.3" in refused.value.message
    unknown = UrlPolicy(resolver=static_resolver({}))
    with pytest.raises(UrlRefused) as refused:
        await unknown.check("https://nowhere.test/")
    assert refused.value.reason == "dns"


@pytest.mark.parametrize(
    "url",
    [
        "http://public.test/",
        "ftp://public.test/",
        "https://user:pw@public.test/",
        "https:///x",
        "not a url",
        "https://" + "a" * 2100,
    ],
)
async def test_policy_refuses_bad_urls(url: str) -> None:
    policy = UrlPolicy(resolver=static_resolver({"public.test": [PUBLIC_IP]}))
    with pytest.raises(UrlRefused):
        await policy.check(url)


async def test_allow_insecure_allows_http_and_loopback() -> None:
    policy = UrlPolicy(allow_insecure=True, resolver=static_resolver({}))
    target = await policy.check("http://127.0.0.1:9/x")
    assert [str(a) for a in target.addresses] == ["127.0.0.1"]


REFUSED_URLS = [
    "https://127.0.0.1/hook",
    "https://10.0.0.1/hook",
    "https://169.254.169.254/latest/meta-data",
    "https://[::1]/hook",
    "https://[::ffff:127.0.0.1]/hook",
    "https://internal.test/hook",  # resolves to private space (injected resolver)
    "https://localhost/hook",
    "http://public.test/hook",
]


@pytest.mark.parametrize("url", REFUSED_URLS)
async def test_refused_at_create_time(tmp_path: Path, ca_file: Path, url: str) -> None:
    resolver = static_resolver(
        {"internal.test": ["10.9.8.7"], "public.test": [PUBLIC_IP], "localhost": ["127.0.0.1"]}
    )
    strict = receiver_settings(ca_file, allowed_networks=())
    settings = Settings(data_dir=tmp_path, internal_secret="w" * 40)
    async with webhooks_app(settings, strict, resolver) as h:
        response = await h.client.post(
            "/api/v1/webhooks", headers=auth(h.account_id), json={"url": url}
        )
        body = assert_error(response, 422, "invalid_webhook_url")
        assert body["details"]["reason"] in {"address", "scheme"}
        assert "http" in body["error"] or "address" in body["error"]


async def test_refused_at_send_time_without_connecting(
    tmp_path: Path, ca: trustme.CA, ca_file: Path
) -> None:
    """Endpoints saved while the operator allowed insecure targets, sent by a strict worker:
    every attempt is `blocked` with its reason, and no receiver sees a connection."""
    v4 = await Receiver(ca).start()
    plain = await Receiver(ca, tls=False).start()
    v6 = await Receiver(ca, bind="::1").start() if ipv6_loopback_available() else None
    resolver = static_resolver({"internal.test": ["127.0.0.1"]})
    urls = [
        f"https://127.0.0.1:{v4.port}/hook",
        "https://10.0.0.1/hook",
        "https://169.254.169.254/latest/meta-data",
        f"https://[::ffff:127.0.0.1]:{v4.port}/hook",
        f"https://internal.test:{v4.port}/hook",
        f"http://127.0.0.1:{plain.port}/hook",
    ]
    if v6 is not None:
        urls.append(f"https://[::1]:{v6.port}/hook")
    insecure = receiver_settings(ca_file, allow_insecure=True)
    strict = receiver_settings(ca_file, allowed_networks=())
    settings = Settings(data_dir=tmp_path, internal_secret="w" * 40)
    try:
        async with webhooks_app(settings, insecure, resolver) as h:
            hooks = [await h.create(url, events=["video.failed"]) for url in urls]
            failure = VideoFailed(video_id="vid_x", error=ErrorInfo(code="bad", message="bad"))
            await h.publish(Event.of(failure, account_id=h.account_id))
            for hook in hooks:
                await h.wait_for_deliveries(hook["id"], 1)
            async with h.worker(strict, resolver):
                for hook in hooks:
                    await _wait_for_attempt(h, hook["id"])
            for hook in hooks:
                [delivery] = await h.deliveries(hook["id"])
                attempt = delivery["attempt_log"][0]
                assert attempt["outcome"] == "blocked", (hook["url"], attempt)
                assert attempt["status_code"] is None
                assert attempt["error"]
                assert delivery["status"] == "pending"  # retried later, checked again
        assert v4.connections == 0
        assert plain.connections == 0
        if v6 is not None:
            assert v6.connections == 0
    finally:
        for server in (v4, plain, v6):
            if server is not None:
                await server.stop()


async def _wait_for_attempt(h: WebhooksHarness, webhook_id: str) -> None:
    async def attempted() -> bool:
        found = await h.deliveries(webhook_id)
        return bool(found) and found[0]["attempts"] >= 1

    await eventually(attempted)


async def test_the_connection_goes_to_the_checked_address_with_sni_and_host(
    receiver: Receiver, ca_file: Path
) -> None:
    calls: list[str] = []
    policy = UrlPolicy(
        allowed_networks=[ipaddress.ip_network("127.0.0.1/32")],
        resolver=static_resolver({HOST: ["127.0.0.1"]}, calls),
    )
    target = await policy.check(receiver.url("/pinned"))
    # The system resolver does not know receiver.test: only the pinned address can work.
    transport = PinnedTransport(target, ssl_context=client_ssl_context(ca_file))
    async with httpx.AsyncClient(transport=transport) as client:
        response = await client.post(target.url, content=b"{}")
    assert response.status_code == 200
    assert calls == [HOST]
    [request] = receiver.requests
    assert request.headers["host"] == f"{HOST}:{receiver.port}"
    assert receiver.sni == [HOST]
    assert request.path == "/pinned"


async def test_certificate_is_verified_for_the_host_name(receiver: Receiver, ca_file: Path) -> None:
    policy = UrlPolicy(
        allowed_networks=[ipaddress.ip_network("127.0.0.1/32")],
        resolver=static_resolver({"other.test": ["127.0.0.1"]}),
    )
    # Same address, but the certificate is for receiver.test only.
    target = await policy.check(f"https://other.test:{receiver.port}/")
    transport = PinnedTransport(target, ssl_context=client_ssl_context(ca_file))
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(httpx.ConnectError):
            await client.post(target.url, content=b"{}")
    # And without the test CA the public trust store does not know the receiver at all.
    good_host = UrlPolicy(
        allowed_networks=[ipaddress.ip_network("127.0.0.1/32")],
        resolver=static_resolver({HOST: ["127.0.0.1"]}),
    )
    target = await good_host.check(receiver.url())
    transport = PinnedTransport(target, ssl_context=client_ssl_context(None))
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(httpx.ConnectError):
            await client.post(target.url, content=b"{}")
    assert receiver.requests == []
    assert receiver.connections == 2  # both reached the pinned address, neither got past TLS


async def test_the_transport_refuses_any_other_host(receiver: Receiver, ca_file: Path) -> None:
    policy = UrlPolicy(
        allowed_networks=[ipaddress.ip_network("127.0.0.1/32")],
        resolver=static_resolver({HOST: ["127.0.0.1"]}),
    )
    target = await policy.check(receiver.url())
    transport = PinnedTransport(target, ssl_context=client_ssl_context(ca_file))
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(httpx.ConnectError):
            await client.post(f"https://elsewhere.test:{receiver.port}/", content=b"{}")
    assert receiver.connections == 0


def test_settings_parse_lists_from_the_environment(monkeypatch: Any) -> None:
    from avc_webhooks.config import WebhookSettings

    monkeypatch.setenv("AVC_WEBHOOKS_RETRY_SCHEDULE", "1, 2.5,10")
    monkeypatch.setenv("AVC_WEBHOOKS_ALLOWED_NETWORKS", "10.20.0.0/16,fd00::/8")
    monkeypatch.setenv("AVC_WEBHOOKS_ALLOW_INSECURE", "1")
    settings = WebhookSettings()
    assert settings.retry_schedule == (1.0, 2.5, 10.0)
    assert [str(n) for n in settings.networks] == ["10.20.0.0/16", "fd00::/8"]
    assert settings.allow_insecure is True
    monkeypatch.setenv("AVC_WEBHOOKS_ALLOWED_NETWORKS", "not-a-network")
    with pytest.raises(ValueError, match="not-a-network"):
        WebhookSettings()
