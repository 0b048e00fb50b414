"""The upload service's Prometheus metrics (on the app's own registry)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.context_managers import InprogressTracker


class UploadMetrics:
    def __init__(self, registry: CollectorRegistry, *, service: str = "upload") -> None:
        self.service = service
        self.bytes = Counter(
            "avc_upload_bytes_total",
            "Bytes of uploaded files stored (chunks accepted, direct uploads stored).",
            ["service", "kind"],
            registry=registry,
        )
        self.chunks = Counter(
            "avc_upload_chunks_total",
            "Chunk requests, by outcome (ok, checksum_mismatch, size_mismatch, rejected, error).",
            ["service", "outcome"],
            registry=registry,
        )
        self.completes = Counter(
            "avc_upload_completes_total",
            "Uploads finished (or refused) by kind (chunked, direct) and outcome "
            "(completed, repeated, incomplete, error).",
            ["service", "kind", "outcome"],
            registry=registry,
        )
        self.expired = Counter(
            "avc_upload_expired_total",
            "Uploads the sweeper expired (their parts removed).",
            ["service"],
            registry=registry,
        )
        self.redriven = Counter(
            "avc_upload_redriven_total",
            "Interrupted completions the sweeper finished, by outcome.",
            ["service", "outcome"],
            registry=registry,
        )

        self.in_flight = Gauge(
            "avc_upload_bodies_in_flight",
            "Upload bodies being received now, by kind (chunk, direct).",
            ["service", "kind"],
            registry=registry,
        )

    def receiving(self, kind: str) -> InprogressTracker:
        """Counts one upload body in flight for the duration of the block."""
        return self.in_flight.labels(self.service, kind).track_inprogress()

    def stored(self, kind: str, size: int) -> None:
        self.bytes.labels(self.service, kind).inc(size)

    def chunk(self, outcome: str) -> None:
        self.chunks.labels(self.service, outcome).inc()

    def complete(self, kind: str, outcome: str) -> None:
        self.completes.labels(self.service, kind, outcome).inc()
