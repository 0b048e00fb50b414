"""Upload records: the typed record maps to and from its document, and the repository owns the
filters (an upload expires only once it is due; chunk versions accumulate)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from avc_common.documents import open_documents
from avc_common.internal_auth import Caller
from avc_upload.repository import (
    Assembled,
    Upload,
    UploadKind,
    UploadRepository,
    UploadStatus,
)

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
ACCOUNT = "acct_" + "a" * 25


def chunked(upload_id: str = "upl_" + "1" * 25) -> Upload:
    return Upload(
        id=upload_id,
        account_id=ACCOUNT,
        kind=UploadKind.CHUNKED,
        status=UploadStatus.OPEN,
        video_id="vid_" + "2" * 25,
        source_key="sources/vid_" + "2" * 25 + "/original",
        created_at=NOW,
        updated_at=NOW,
        expires_at=NOW + timedelta(hours=1),
        filename="lesson.mp4",
        title="lesson",
        content_type="video/mp4",
        size=12,
        chunk_size=5,
        total_chunks=3,
        multipart_id="mp",
        init_request_id="req_x",
    )


def test_a_new_record_round_trips_through_its_document() -> None:
    upload = chunked()
    doc = upload.to_doc()
    assert doc["status"] == "open"
    assert doc["kind"] == "chunked"
    assert Upload.from_doc(doc) == upload
    assert upload.missing() == [0, 1, 2]
    assert [upload.chunk_length(i) for i in range(3)] == [5, 5, 2]


def test_a_record_read_back_has_typed_parts_and_status() -> None:
    doc = chunked().to_doc() | {
        "status": "completing",
        "received": [2, 0],
        "parts": {"c0": {"etag": "e1", "size": 5, "accepted": ["e0"]}, "c2": {"size": 2}},
    }
    upload = Upload.from_doc(doc)
    assert upload.status is UploadStatus.COMPLETING
    assert upload.missing() == [1]
    assert upload.parts[0].accepted == {"e0", "e1"}  # the etag of records before `accepted`
    assert upload.parts[2].accepted == frozenset()
    with pytest.raises(ValueError):
        Upload.from_doc(doc | {"status": "sideways"})


@pytest.fixture
async def repo(tmp_path: Path) -> AsyncIterator[UploadRepository]:
    documents = await open_documents(f"sqlite:///{tmp_path}", "upload")
    try:
        repository = UploadRepository(documents.collection("uploads"))
        await repository.ensure_indexes()
        yield repository
    finally:
        await documents.close()


async def test_expire_moves_only_a_due_upload(repo: UploadRepository) -> None:
    upload = chunked()
    await repo.insert(upload)
    purge = NOW + timedelta(days=30)
    assert await repo.expire(ACCOUNT, upload.id, now=NOW, purge_at=purge) is None
    later = upload.expires_at + timedelta(seconds=1)
    expired = await repo.expire(ACCOUNT, upload.id, now=later, purge_at=purge)
    assert expired is not None
    assert expired.status is UploadStatus.EXPIRED
    assert expired.cleanup_pending
    assert await repo.expire(ACCOUNT, upload.id, now=later, purge_at=purge) is None


async def test_the_chunked_path_moves_one_state_at_a_time(repo: UploadRepository) -> None:
    upload = chunked()
    await repo.insert(upload)
    recorded: Upload | None = None
    for index, etag in ((0, "a"), (1, "b"), (2, "c"), (0, "d")):
        recorded = await repo.record_part(ACCOUNT, upload.id, index, etag=etag, size=5, now=NOW)
    assert recorded is not None
    assert recorded.parts[0].accepted == {"a", "d"}
    assert recorded.missing() == []
    caller = Caller(account_id=ACCOUNT, plan="pro", request_id="req_c")
    started = await repo.start_completion(ACCOUNT, upload.id, caller, NOW)
    assert started is not None
    assert started.caller() == caller
    assert await repo.start_completion(ACCOUNT, upload.id, caller, NOW) is None  # not open
    assembled = await repo.assembled(started, Assembled("f" * 64, "etag-3", "evt_1"), NOW)
    assert assembled is not None
    assert len(assembled.parts) == 0
    assert assembled.sha256 == "f" * 64
    assert await repo.registered(upload, embed_token="tok", video_status="processing", now=NOW)
    done = await repo.completed(upload, now=NOW, purge_at=NOW)
    assert done is not None
    assert done.status is UploadStatus.COMPLETED
    assert done.embed_token == "tok"
    assert done.completed_at == NOW
