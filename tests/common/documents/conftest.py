"""Fixtures for the documents contract suite: every test runs once per adapter.

SQLite always runs (in tmp_path). MongoDB runs against `AVC_TEST_MONGODB_URL` when set, else a
testcontainers MongoDB when a Docker engine answers, else it is skipped with the reason.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from avc_common.documents import DocumentDatabase, open_documents

MONGO_SKIP = (
    "MongoDB: no server reachable — set AVC_TEST_MONGODB_URL or start a Docker engine for "
    "testcontainers"
)
# Short, so the SQLite sweep is observable in a test; MongoDB's TTL monitor runs every 60 s.
SQLITE_SWEEP_SECONDS = 0.2


def _docker_answers() -> bool:
    try:
        done = subprocess.run(["docker", "info"], capture_output=True, timeout=15, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


@pytest.fixture(scope="session")
def mongodb_url() -> Iterator[str | None]:
    """Yields a MongoDB URL for the session, or None when no server can be had."""
    if url := os.environ.get("AVC_TEST_MONGODB_URL"):
        yield url
        return
    if not _docker_answers():
        yield None
        return
    from testcontainers.community.mongodb import MongoDbContainer

    with MongoDbContainer("mongo:7") as container:
        yield container.get_connection_url()


@dataclass
class Backend:
    """One adapter under test: its URL and database name, and every instance opened on them."""

    kind: str
    url: str
    name: str
    opened: list[DocumentDatabase] = field(default_factory=list)

    async def open(self) -> DocumentDatabase:
        """Returns another instance on the same database (like a second process would open)."""
        db = await open_documents(self.url, self.name, ttl_sweep_seconds=SQLITE_SWEEP_SECONDS)
        self.opened.append(db)
        return db


@pytest.fixture(params=["sqlite", "mongodb"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param == "sqlite":
        backend = Backend("sqlite", f"sqlite://{tmp_path}/data", "svc")
    else:
        url = request.getfixturevalue("mongodb_url")
        if url is None:
            pytest.skip(MONGO_SKIP)
        # A database per test, dropped afterwards, so runs never see each other's data.
        backend = Backend("mongodb", url, f"test_{uuid.uuid4().hex[:16]}")
    yield backend
    if backend.kind == "mongodb":
        await (await backend.open()).drop()
    for db in backend.opened:
        await db.close()


@pytest.fixture
async def db(backend: Backend) -> DocumentDatabase:
    return await backend.open()
