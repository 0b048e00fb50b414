"""Request and response bodies of the stats endpoints."""

from __future__ import annotations

from typing import Annotated, Final

from pydantic import BaseModel, ConfigDict, Field, StrictInt

MAX_THRESHOLDS: Final = 20
MAX_THRESHOLD_VIEWS: Final = 10**12


class VideosByStatus(BaseModel):
    processing: int
    ready: int
    failed: int


class StatsResponse(BaseModel):
    total_videos: int = Field(description="Videos of the account that are not deleted.")
    total_views: int = Field(description="Views of those videos.")
    storage_used_bytes: int = Field(description="Their source files plus their renditions.")
    videos_by_status: VideosByStatus


Threshold = Annotated[StrictInt, Field(gt=0, le=MAX_THRESHOLD_VIEWS)]


class Thresholds(BaseModel):
    views: list[int] = Field(description="View counts that fire `view.threshold`, ascending.")


class ThresholdsUpdate(BaseModel):
    model_config = ConfigDict(extra="ignore")

    views: list[Threshold] = Field(
        max_length=MAX_THRESHOLDS,
        description=(
            f"Positive whole numbers, at most {MAX_THRESHOLDS}; stored sorted and without "
            "duplicates. An empty list turns view thresholds off."
        ),
    )
