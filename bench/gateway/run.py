"""Gateway overhead: an authenticated GET through the gateway vs the same service route called
directly, same concurrency, same run.

Starts the upload service and the gateway as separate `avcaption serve` processes on
127.0.0.1 (embedded adapters, in-process bus, a fresh data dir), makes an enterprise account and
an API key with `avcaption admin`, then alternates rounds of

    direct:   GET <upload>/api/v1/upload/<id>   with a valid internal token
    gateway:  GET <gateway>/api/v1/upload/<id>  with X-API-Key (auth, rate limit, proxy)

and prints requests/s and latency percentiles of both, and their ratio (target >= 0.5). A third
series, `proxy`, goes through a gateway process that has only the proxy (every request admitted
without credentials or rate limits, `tests/e2e/standalone.py`): the proxy's share of the cost
apart from authentication. Each
round is bounded by a request count and a time limit. The load comes from a lean keep-alive
HTTP/1.1 client (one asyncio task per connection), so that the client costs little next to
the servers.

    python bench/gateway/run.py [--requests 4000] [--concurrency 32] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.e2e.harness import (  # noqa: E402
    STANDALONE,
    Stack,
    free_port,
    running_stack,
)

TARGET_RATIO = 0.5
UPLOAD_ID = "upl_benchdoesnotexist"
PATH = f"/api/v1/upload/{UPLOAD_ID}"
HIGH_LIMITS = {
    f"AVC_GATEWAY_{name}_RATE_LIMIT_PER_MINUTE": "1000000000" for name in ("READ", "WRITE", "STATS")
}


@dataclass
class Result:
    label: str
    seconds: float
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: int = 0

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0

    def line(self) -> str:
        statuses = ", ".join(f"{s}x{n}" for s, n in sorted(self.statuses.items()))
        return (
            f"{self.label:<8} {len(self.latencies):>6} req in {self.seconds:6.2f} s "
            f"{self.rps:9.1f} req/s   p50 {self.percentile(0.50) * 1000:7.2f} ms   "
            f"p99 {self.percentile(0.99) * 1000:7.2f} ms   mean "
            f"{statistics.fmean(self.latencies) * 1000 if self.latencies else 0:7.2f} ms   "
            f"[{statuses}; {self.errors} errors]"
        )


async def _read_response(reader: asyncio.StreamReader) -> int:
    """Reads one HTTP/1.1 response (Content-Length or chunked); returns its status."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    return status


async def _connection(
    url: str, request: bytes, result: Result, budget: list[int], deadline: float
) -> None:
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        while budget[0] > 0 and time.perf_counter() < deadline:
            budget[0] -= 1
            started = time.perf_counter()
            try:
                writer.write(request)
                status = await _read_response(reader)
            except (OSError, asyncio.IncompleteReadError, ValueError):
                result.errors += 1
                writer.close()
                reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
                continue
            result.latencies.append(time.perf_counter() - started)
            result.statuses[status] += 1
    finally:
        writer.close()


async def load(
    label: str, url: str, headers: dict[str, str], *, requests: int, concurrency: int, limit: float
) -> Result:
    """Sends `requests` GETs over `concurrency` keep-alive connections (at most `limit` s)."""
    host = urlsplit(url).netloc
    lines = [f"GET {PATH} HTTP/1.1", f"Host: {host}", *(f"{k}: {v}" for k, v in headers.items())]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    budget = [requests]
    started = time.perf_counter()
    result = Result(label, 0.0)
    deadline = started + limit
    await asyncio.gather(
        *(_connection(url, request, result, budget, deadline) for _ in range(concurrency))
    )
    result.seconds = time.perf_counter() - started
    return result


def merge(label: str, results: list[Result]) -> Result:
    merged = Result(label, sum(r.seconds for r in results))
    for r in results:
        merged.latencies += r.latencies
        merged.statuses.update(r.statuses)
        merged.errors += r.errors
    return merged


def start(stack: Stack) -> tuple[str, str, str]:
    """Starts the upload service, the gateway and a proxy-only gateway; returns their URLs."""
    upload = stack.spawn("upload")
    upload.wait_ready()
    gateway = stack.spawn("gateway", env={"AVC_UPLOAD_URL": upload.url})
    port = free_port()
    proxy = stack.spawn_command(
        "proxy-only",
        [sys.executable, str(STANDALONE), "gateway", "--port", str(port)],
        port=port,
        env={"AVC_UPLOAD_URL": upload.url},
    )
    gateway.wait_ready()
    proxy.wait_ready()
    return upload.url, gateway.url, proxy.url


def internal_token(secret: str) -> str:
    from avc_common.internal_auth import Caller, mint_internal_token

    caller = Caller(account_id="acct_bench", plan="enterprise", request_id="bench")
    return mint_internal_token(caller, secret=secret, ttl_seconds=3600)


async def measure(
    args: argparse.Namespace, stack: Stack, upload: str, gateway: str, proxy: str
) -> None:
    key = stack.api_key("bench@example.com")
    token = {"X-AVC-Internal-Token": internal_token(stack.secret)}
    series = (
        ("direct", upload, token),
        ("gateway", gateway, {"X-API-Key": key}),
        ("proxy", proxy, {}),
    )
    options = {"concurrency": args.concurrency, "limit": args.max_seconds}
    for label, url, headers in series:
        await load(label, url, headers, requests=args.warmup, **options)
    rounds: dict[str, list[Result]] = {label: [] for label, _, _ in series}
    for _ in range(args.rounds):
        for label, url, headers in series:
            rounds[label].append(await load(label, url, headers, requests=args.requests, **options))
    for results in rounds.values():
        for r in results:
            print("  round", r.line())
    merged = {label: merge(label, results) for label, results in rounds.items()}
    d, g, p = merged["direct"], merged["gateway"], merged["proxy"]
    print()
    for r in (d, g, p):
        print(r.line())
    ratio = g.rps / d.rps if d.rps else 0.0
    verdict = "meets" if ratio >= TARGET_RATIO else "BELOW"
    print(f"\nthroughput ratio gateway/direct = {ratio:.2f} ({verdict} the {TARGET_RATIO} target)")
    print(f"throughput ratio proxy-only/direct = {p.rps / d.rps if d.rps else 0.0:.2f}")
    print(f"p99 added by the gateway = {(g.percentile(0.99) - d.percentile(0.99)) * 1000:.2f} ms")
    if set(d.statuses) != set(g.statuses):
        print(f"WARNING: different answers: direct {dict(d.statuses)}, gateway {dict(g.statuses)}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=4000, help="per round and side")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--max-seconds", type=float, default=30.0, help="per round and side")
    args = parser.parse_args()

    print(f"route: GET {PATH} on the upload service (an id that does not exist: the service")
    print("answers 404 after checking the internal token and looking it up; a full round trip)")
    print(f"concurrency {args.concurrency}, {args.rounds} rounds x {args.requests} per side\n")
    with (
        tempfile.TemporaryDirectory(prefix="avc-bench-") as root,
        running_stack(Path(root), bus_url="memory://", extra_env=HIGH_LIMITS) as stack,
    ):
        upload, gateway, proxy = start(stack)
        asyncio.run(measure(args, stack, upload, gateway, proxy))


if __name__ == "__main__":
    main()
