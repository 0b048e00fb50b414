"""Schemathesis against a running all-in-one server: no request may get a 5xx.

Starts `avcaption serve --target all` on a fresh data dir, makes an enterprise account and an
API key with `avcaption admin`, runs `schemathesis run …/api/v1/openapi.json` with the key
(check `not_a_server_error`, bounded examples per operation), then counts every answer the
server logged by status.

    python -m tests.e2e.fuzz [--max-examples N] [--workers N]     (`make fuzz`)
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import httpx

from .harness import running_stack

OPENAPI_PATH: Final = "/api/v1/openapi.json"
# Fuzzing must reach the services, not stop at the rate limiter.
HIGH_LIMITS: Final = {
    f"AVC_{name}_RATE_LIMIT_PER_MINUTE": "100000000"
    for name in ("READ", "WRITE", "UPLOAD", "STATS", "PUBLIC", "LOGIN")
}
_ACCESS: Final = re.compile(r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[\d.]+" (?P<status>\d{3})$')


class NotServed(Exception):
    """The server does not serve the public OpenAPI document."""


@dataclass
class FuzzResult:
    exit_code: int
    output: str
    statuses: Counter[int]
    operations: int
    server_errors: list[str]

    def summary(self) -> str:
        by_status = ", ".join(f"{s}: {n}" for s, n in sorted(self.statuses.items()))
        return (
            f"schemathesis exit {self.exit_code}; {self.operations} operations in the document; "
            f"{sum(self.statuses.values())} requests answered ({by_status}); "
            f"{len(self.server_errors)} server errors"
        )


def schemathesis_command() -> list[str]:
    script = Path(sys.executable).with_name("schemathesis")
    found = str(script) if script.exists() else shutil.which("schemathesis")
    if not found:
        raise RuntimeError("schemathesis is not installed")
    return [found]


def run_fuzz(
    root: Path,
    *,
    max_examples: int = 10,
    workers: int = 2,
    timeout: float = 900,
) -> FuzzResult:
    """Returns what schemathesis and the server's access log say about one bounded run."""
    with running_stack(root, bus_url="memory://", extra_env=HIGH_LIMITS) as stack:
        server = stack.start_all_in_one()
        document = httpx.get(f"{server.url}{OPENAPI_PATH}", timeout=30)
        if document.status_code != 200:
            raise NotServed(f"{OPENAPI_PATH} answered {document.status_code}")
        operations = sum(
            1
            for item in document.json().get("paths", {}).values()
            for method in item
            if method != "parameters"
        )
        key = stack.api_key()
        args = [
            *schemathesis_command(),
            "--no-color",
            "run",
            f"{server.url}{OPENAPI_PATH}",
            "--checks",
            "not_a_server_error",
            "--header",
            f"X-API-Key: {key}",
            "--max-examples",
            str(max_examples),
            "--phases",
            "examples,coverage,fuzzing",
            "--workers",
            str(workers),
            "--request-timeout",
            "30",
            "--seed",
            "1",
        ]
        run = subprocess.run(
            args, capture_output=True, text=True, timeout=timeout, check=False, cwd=root
        )
        records = server.records()
    statuses: Counter[int] = Counter()
    errors = []
    for record in records:
        if record.get("logger") != "uvicorn.access":
            continue
        match = _ACCESS.search(str(record.get("event", "")))
        if match is None or match["path"].startswith(("/readyz", OPENAPI_PATH)):
            continue
        status = int(match["status"])
        statuses[status] += 1
        if status >= 500:
            errors.append(
                f"{status} {match['method']} {match['path']} ({record.get('request_id')})"
            )
    return FuzzResult(run.returncode, run.stdout + run.stderr, statuses, operations, errors)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--max-examples", type=int, default=25)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="avc-fuzz-") as root:
        try:
            result = run_fuzz(Path(root), max_examples=args.max_examples, workers=args.workers)
        except NotServed as exc:
            print(f"cannot fuzz: {exc} (is the public OpenAPI installed in the gateway app?)")
            sys.exit(2)
    print(result.output[-6000:])
    print(result.summary())
    for line in result.server_errors[:50]:
        print("  5xx:", line)
    sys.exit(0 if result.exit_code == 0 and not result.server_errors else 1)


if __name__ == "__main__":
    main()
