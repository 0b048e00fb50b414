"""The media service's own error codes (subclasses of the shared AppError hierarchy)."""

from __future__ import annotations

from avc_common.errors import AppError, Conflict, Forbidden, ValidationFailed


class DomainNotAllowed(Forbidden):
    code = "domain_not_allowed"
    default_message = "This video cannot be embedded on this site."


class InvalidPlaybackToken(Forbidden):
    code = "invalid_playback_token"
    default_message = "The playback link is not valid."


class PlaybackTokenExpired(Forbidden):
    code = "playback_token_expired"
    default_message = "The playback link has expired; reload the player to get a new one."


class RangeNotSatisfiable(AppError):
    status = 416
    code = "range_not_satisfiable"
    default_message = "The requested range is outside the file."


class VideoIdTaken(Conflict):
    code = "video_id_taken"
    default_message = "This video id is already used by another upload."


class VideoNotReady(Conflict):
    code = "video_not_ready"
    default_message = "The video is not ready to play yet."


class PresetNotFound(ValidationFailed):
    code = "preset_not_found"
    default_message = "No player preset with this id."
