"""Two gateway replicas share one Redis budget; one is killed (SIGKILL) under load: the other
keeps serving, and the shared per-minute limit still holds across both."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from tests.support.s3 import S3Server

from .system import running_system

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

LIMIT = 120
REQUESTS = 220
KILL_AFTER = 50
THREADS = 4


def test_a_killed_gateway_leaves_the_other_serving_within_the_shared_limit(
    tmp_path: Path, moto_server: S3Server
) -> None:
    env = {"AVC_GATEWAY_READ_RATE_LIMIT_PER_MINUTE": str(LIMIT)}
    with running_system(
        tmp_path / "sys", moto_server, services=("media",), workers=(), gateways=2, env=env
    ) as system:
        urls = {name: system.url(name) for name in system.gateways}
        victim, survivor = system.gateways
        alive = dict.fromkeys(urls, True)
        lock = threading.Lock()
        sent = 0
        outcomes: Counter[tuple[str, str, int | str]] = Counter()  # (gateway, phase, status)
        killed = threading.Event()
        remaining_seen: list[int] = []

        def one_request(client: httpx.Client, n: int) -> None:
            names = [g for g in urls if alive[g]]
            order = names[n % len(names) :] + names[: n % len(names)]
            for name in order:  # like a load balancer: the next replica when one is gone
                phase = "after" if killed.is_set() else "before"
                try:
                    response = client.get(f"{urls[name]}/api/v1/videos", headers=system.headers)
                except httpx.ConnectError:
                    alive[name] = False
                    continue
                except httpx.TransportError:
                    # Cut mid-request: the hit may or may not have been counted.
                    alive[name] = False
                    with lock:
                        outcomes[name, phase, "cut"] += 1
                    continue
                with lock:
                    outcomes[name, phase, response.status_code] += 1
                    if name == survivor and killed.is_set() and response.status_code == 200:
                        remaining_seen.append(int(response.headers["X-RateLimit-Remaining"]))
                if response.status_code == 429:
                    assert response.json()["code"] == "rate_limited"
                    assert int(response.headers["Retry-After"]) >= 1
                return
            raise AssertionError(f"request {n}: no gateway answered")

        def load() -> None:
            nonlocal sent
            with httpx.Client(timeout=30) as client:
                while True:
                    with lock:
                        if sent >= REQUESTS:
                            return
                        n = sent
                        sent += 1
                    one_request(client, n)

        started = time.monotonic()
        threads = [threading.Thread(target=load) for _ in range(THREADS)]
        for thread in threads:
            thread.start()
        while sent < KILL_AFTER:
            time.sleep(0.01)
        pid = system.kill9(victim)
        killed.set()
        for thread in threads:
            thread.join(120)
        elapsed = time.monotonic() - started
        keys = system.redis_keys()

    ok = sum(c for (_, _, status), c in outcomes.items() if status == 200)
    refused = sum(c for (_, _, status), c in outcomes.items() if status == 429)
    cut = sum(c for (_, _, status), c in outcomes.items() if status == "cut")
    others = {k: c for k, c in outcomes.items() if k[2] not in (200, 429, "cut")}
    print(
        f"\n{REQUESTS} reads over 2 gateways, limit {LIMIT}/min shared in Redis, gateway pid "
        f"{pid} killed after {KILL_AFTER}: {ok} ok, {refused} refused (429), {cut} cut by the "
        f"kill, in {elapsed:.1f} s; by gateway/phase/status {dict(outcomes)}"
    )
    assert elapsed < 60, "the whole run must fit in one rate-limit window"
    assert not others, others
    # The budget is shared: never more than the limit served, and only hits lost with the
    # killed replica can make it fewer.
    assert ok <= LIMIT
    assert ok + cut >= LIMIT
    assert ok + refused == REQUESTS  # every request got an answer (cut ones from the survivor)
    after = {status: c for (name, phase, status), c in outcomes.items() if phase == "after"}
    assert after.get(200, 0) > 0, "the survivor served after the kill"
    assert after.get(429, 0) > 0, "the survivor refused once the shared budget ran out"
    assert {n for (n, p, st) in outcomes if p == "after" and st != "cut"} == {survivor}
    # The survivor's remaining budget counts the killed replica's hits too: at least
    # KILL_AFTER - THREADS hits were answered before the kill, on either replica.
    assert remaining_seen, "no 200 from the survivor after the kill"
    assert max(remaining_seen) < LIMIT - (KILL_AFTER - THREADS), remaining_seen
    assert keys, "rate-limit state is in Redis under AVC_RATELIMIT_KEY_PREFIX"
