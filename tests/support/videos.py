"""Real, tiny video files made with ffmpeg for the tests (never fake bytes)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def ffmpeg_exe() -> str:
    """Returns the system ffmpeg, else the static one shipped in the imageio-ffmpeg wheel."""
    system = shutil.which("ffmpeg")
    if system:
        return system
    import imageio_ffmpeg

    return str(imageio_ffmpeg.get_ffmpeg_exe())


def make_video(
    path: Path,
    *,
    seconds: float = 2.0,
    width: int = 320,
    height: int = 240,
    fps: int = 25,
    video_bitrate: str | None = None,
    audio: bool = True,
) -> Path:
    """Writes an H.264/AAC MP4 test pattern (with a tone) and returns its path.

    `video_bitrate` (e.g. "18M") inflates the file when a test needs a given size; the test
    pattern compresses well, so it is encoded with noise to make the bitrate stick.
    """
    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y"]
    cmd += ["-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate={fps}:duration={seconds}"]
    if audio:
        cmd += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}"]
    vf = "noise=alls=40:allf=t" if video_bitrate else "null"
    cmd += ["-vf", vf, "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
    if video_bitrate:
        cmd += ["-b:v", video_bitrate, "-maxrate", video_bitrate, "-bufsize", video_bitrate]
    if audio:
        cmd += ["-c:a", "aac", "-b:a", "96k", "-shortest"]
    cmd += ["-movflags", "+faststart", str(path)]
    subprocess.run(cmd, check=True, timeout=300)
    return path
