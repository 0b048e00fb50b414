"""`open_objects` picks the adapter once, from the URL."""

from __future__ import annotations

from pathlib import Path

import pytest

from avc_common.objects import LocalObjectStore, S3ObjectStore, open_objects


def test_file_url_opens_a_local_store_and_creates_the_root(tmp_path: Path) -> None:
    store = open_objects(f"file://{tmp_path}/data/objects")
    assert isinstance(store, LocalObjectStore)
    assert Path(store.root) == (tmp_path / "data" / "objects").resolve()
    assert Path(store.root).is_dir()


def test_file_url_with_percent_escapes(tmp_path: Path) -> None:
    store = open_objects(f"file://{tmp_path}/with%20space")
    assert isinstance(store, LocalObjectStore)
    assert Path(store.root).name == "with space"


@pytest.mark.parametrize("url", ["file://relative/dir", "file:", "file://host/abs"])
def test_file_url_must_be_absolute(url: str) -> None:
    with pytest.raises(ValueError, match="file:///"):
        open_objects(url)


def test_s3_url_with_every_option() -> None:
    store = open_objects(
        "s3://AKIA%2Fkey:se%2Bcret%2Fx@minio.internal:9000/avc-media?secure=false&region=eu-west-1"
    )
    assert isinstance(store, S3ObjectStore)
    assert (store.endpoint, store.bucket) == ("minio.internal:9000", "avc-media")
    assert (store.secure, store.region) == (False, "eu-west-1")


def test_s3_url_defaults_to_https() -> None:
    store = open_objects("s3://key:secret@s3.example.com/bucket")
    assert isinstance(store, S3ObjectStore)
    assert (store.secure, store.region, store.endpoint) == (True, None, "s3.example.com")


@pytest.mark.parametrize(
    "url",
    [
        "s3://key:secret@host:9000",
        "s3://key:secret@host:9000/",
        "s3://key:secret@host:9000/bucket/extra",
        "s3://key:secret@host:9000/bucket?secure=maybe",
        "s3://key:secret@host:9000/bucket?timeout=3",
    ],
)
def test_bad_s3_urls(url: str) -> None:
    with pytest.raises(ValueError):
        open_objects(url)


@pytest.mark.parametrize(
    "url", ["gs://bucket", "minio://host/bucket", "/data/objects", "", "http://host/bucket"]
)
def test_other_schemes_name_the_supported_ones(url: str) -> None:
    with pytest.raises(ValueError, match=r"file:///.*s3://"):
        open_objects(url)
