"""HTTP routes of the subtitles feature (mounted by `avc_media.app`)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
