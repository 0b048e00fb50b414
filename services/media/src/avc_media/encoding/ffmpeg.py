"""Which ffmpeg to run, and running it (and the `avprobe` child) on untrusted input without
blocking the loop.

Binaries: `AVC_MEDIA_FFMPEG_PATH` when set; else the system's (on PATH); else the static ffmpeg
shipped in the imageio-ffmpeg wheel, so a fresh machine needs no apt. No ffprobe is needed:
stream facts come from PyAV's bundled libraries (see `probe` and `avprobe`).

Every run is a subprocess awaited by asyncio (the event loop keeps serving heartbeats): stdin
closed, a minimal environment (no proxy variables), its own session, killed when it runs past
its time limit, when the awaiting task is cancelled, and — on Linux — when the worker process
dies (PR_SET_PDEATHSIG), with core dumps off and each written file capped (RLIMIT_FSIZE).
Network access is excluded by the arguments each command is built with (`-protocol_whitelist
file`, `-format_whitelist`: see `formats.INPUT_GUARDS`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import resource
import shutil
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from avc_common.logging import get_logger
from avc_media.config import MediaSettings

log = get_logger(__name__)

MAX_FILE_BYTES: Final = 4 * 1024**3
"""RLIMIT_FSIZE of an ffmpeg run: no single output file (segment, poster) gets near this."""
_OUTPUT_TAIL_BYTES: Final = 64 * 1024
_PR_SET_PDEATHSIG: Final = 1


@dataclass(frozen=True)
class Binaries:
    ffmpeg: str


def find_binaries(settings: MediaSettings) -> Binaries:
    """Returns the configured ffmpeg, else the system's, else imageio-ffmpeg's static one."""
    ffmpeg = settings.ffmpeg_path or shutil.which("ffmpeg")
    if not ffmpeg:
        import imageio_ffmpeg

        ffmpeg = str(imageio_ffmpeg.get_ffmpeg_exe())
    return Binaries(ffmpeg=ffmpeg)


class FfmpegError(Exception):
    """A run could not finish (timeout); `output` is its stderr tail, for the logs only."""

    def __init__(self, message: str, *, output: str = "") -> None:
        super().__init__(message)
        self.output = output


class FfmpegTimeout(FfmpegError):
    pass


@dataclass(frozen=True)
class RunResult:
    returncode: int
    stdout: bytes
    stderr: str
    """The last 64 KiB of stderr (never shown to users)."""

    @property
    def killed_by_signal(self) -> bool:
        return self.returncode < 0


def _child_setup(nice: int) -> Callable[[], None]:
    libc = None
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            libc = ctypes.CDLL(None, use_errno=True)

    def setup() -> None:
        # Runs in the child between fork and exec: system calls only.
        if libc is not None:
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_FSIZE, (MAX_FILE_BYTES, MAX_FILE_BYTES))
        if nice:
            os.nice(nice)

    return setup


def _environment() -> dict[str, str]:
    env = {"LC_ALL": "C", "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    if "TMPDIR" in os.environ:
        env["TMPDIR"] = os.environ["TMPDIR"]
    return env


async def _drain(stream: asyncio.StreamReader | None, keep: int, sink: bytearray) -> None:
    if stream is None:
        return
    while chunk := await stream.read(65536):
        sink.extend(chunk)
        if len(sink) > keep:
            del sink[: len(sink) - keep]


async def run(
    argv: Sequence[str],
    *,
    limit: float,
    cwd: str | None = None,
    nice: int = 0,
    stdout_limit: int = 1024 * 1024,
) -> RunResult:
    """Returns the result of running `argv` to its end; raises FfmpegTimeout after `limit`
    seconds (the process is killed). Cancelling the caller kills the process too."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=cwd,
        env=_environment(),
        start_new_session=True,
        preexec_fn=_child_setup(nice),  # only system calls, see _child_setup
    )
    out = bytearray()
    err = bytearray()
    readers = asyncio.gather(
        _drain(proc.stdout, stdout_limit, out), _drain(proc.stderr, _OUTPUT_TAIL_BYTES, err)
    )
    try:
        async with asyncio.timeout(limit):
            await readers
            returncode = await proc.wait()
    except TimeoutError:
        await _kill(proc)
        raise FfmpegTimeout(
            f"{os.path.basename(argv[0])} ran longer than {limit:.0f}s",
            output=err.decode(errors="replace"),
        ) from None
    except BaseException:
        await _kill(proc)
        readers.cancel()
        raise
    return RunResult(returncode, bytes(out), err.decode(errors="replace"))


async def _kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        with contextlib.suppress(Exception):
            await asyncio.shield(asyncio.wait_for(proc.wait(), 10))
