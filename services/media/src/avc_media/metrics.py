"""Prometheus metrics of the encode worker (`media-worker`'s `/metrics`)."""

from __future__ import annotations

from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

ENCODE_BUCKETS: Final = (1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200)


class EncodeMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.encodes = Counter(
            "avc_media_encodes_total",
            "Encodes by outcome (ready, failed, retry, lost, skipped).",
            ["outcome"],
            registry=registry,
        )
        self.seconds = Histogram(
            "avc_media_encode_seconds",
            "Wall time of one encode (probe to stored), by outcome.",
            ["outcome"],
            buckets=ENCODE_BUCKETS,
            registry=registry,
        )
        self.queue_lag = Histogram(
            "avc_media_encode_queue_lag_seconds",
            "Time from registration to the start of the encode.",
            buckets=ENCODE_BUCKETS,
            registry=registry,
        )
        self.in_progress = Gauge(
            "avc_media_encodes_in_progress", "Encodes running now.", registry=registry
        )
        # Encode seconds per minute of video = rate(encode_seconds_sum) / rate(this) * 60.
        self.video_seconds = Counter(
            "avc_media_encoded_video_seconds",
            "Seconds of source video encoded to ready.",
            registry=registry,
        )
        self.redriven = Counter(
            "avc_media_redriven_total",
            "Work re-driven from the media database, by kind.",
            ["kind"],
            registry=registry,
        )
        # A worker took over the lease of a video whose previous worker stopped renewing it
        # (killed, stalled or cut off from the database): each is one encode started again.
        self.lease_takeovers = Counter(
            "avc_media_lease_takeovers",
            "Encodes taken over after another worker's lease ran out.",
            registry=registry,
        )
        self.scratch_swept_folders = Counter(
            "avc_media_scratch_swept_folders",
            "Scratch folders left by dead workers and removed by the sweep.",
            registry=registry,
        )
        self.scratch_swept_bytes = Counter(
            "avc_media_scratch_swept_bytes",
            "Bytes freed by removing scratch folders of dead workers.",
            registry=registry,
        )
