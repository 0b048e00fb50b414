"""Which containers and protocols an upload may be read with (kept free of imports: the
`avprobe` child loads it, and starts faster without the service's settings and logging)."""

from __future__ import annotations

from typing import Final

# Demuxers an upload may be read with. Everything else is refused before any byte is parsed by
# another demuxer: playlists (hls, concat) and image sequences could name other files, `tty` and
# friends would "play" any text file. ffmpeg matches any one name of a demuxer's name list.
INPUT_FORMATS: Final = (
    "mov",  # mov,mp4,m4a,3gp,3g2,mj2
    "matroska",  # matroska,webm
    "avi",
    "mpegts",
    "mpeg",
    "flv",
    "asf",
    "mxf",
    "ogg",
    # Sound-only formats: read only so that their owner hears "no video track", not "not a
    # video file" (they hold no picture, so none is ever encoded).
    "mp3",
    "aac",
    "wav",
    "flac",
)
INPUT_GUARDS: Final = (
    "-protocol_whitelist",
    "file",
    "-format_whitelist",
    ",".join(INPUT_FORMATS),
)
"""Input options for every read of an upload: local files only, known containers only."""
