"""ffmpeg itself: finding the binary, rates written as it reads them, what it says about a file (``file_header``,
``probe`` and its ``VideoInfo``), checking the video it made (``verify_video``) and saying why it failed.

The binary is the one on ``PATH``, else the one the ``imageio-ffmpeg`` wheel ships (``IMAGEIO_FFMPEG_EXE`` points
that wheel elsewhere).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from .. import child_processes
from ..errors import FFmpegNotFoundError, VideoError
from ..fileio import is_partial_of
from ..presenting import Presentable


@dataclass(frozen=True)
class VideoInfo(Presentable):
    path: Path
    codec: str
    pix_fmt: str
    width: int
    height: int
    fps: float
    frames: int
    duration: float
    size_bytes: int
    command: tuple[str, ...] = field(default=(), compare=False)  # the ffmpeg argv that wrote it (stitch only)
    audio: str = ""  # the soundtrack's codec ("aac"); "" when the file has none
    audio_duration: float = 0.0  # seconds of sound, read by decoding it

    @property
    def command_line(self) -> str:
        """The ffmpeg command as one shell line (its output is the partial file, renamed once checked)."""
        return shlex.join(self.command)

    def command_in(self, folder: str | os.PathLike) -> tuple[str, ...]:
        """The command that makes this video when run in ``folder``: the paths under ``folder`` relative to it,
        and the video's own name where ffmpeg wrote the partial file that took that name once checked."""
        base = os.path.abspath(os.path.expanduser(folder))
        own = os.path.abspath(self.path)
        return tuple(_relative(own if is_partial_of(Path(arg), self.path) else arg, base) for arg in self.command)

    @property
    def facts(self) -> str:
        """The video's facts without its path or byte size (stable from machine to machine)."""
        return (f"{self.frames} frames at {self.fps:g} fps = {self.duration:.1f} s, {self.codec}/{self.pix_fmt}, "
                f"{self.width}×{self.height}")

    def __str__(self) -> str:
        sound = f", {self.audio} sound {self.audio_duration:.1f} s" if self.audio else ""
        return (f"{self.path} ({self.codec}, {self.pix_fmt}, {self.width}×{self.height}, {self.frames} frames "
                f"at {self.fps:g} fps = {self.duration:.1f} s{sound}, {self.size_bytes / 1024:.0f} KiB)")


def _relative(arg: str, base: str) -> str:
    """``arg`` relative to the folder ``base`` when it is a path inside it; else as it is."""
    if not os.path.isabs(arg):
        return arg
    inside = os.path.relpath(arg, base)
    return arg if inside.startswith(os.pardir) else inside


def find_ffmpeg() -> str:
    """Path of the ffmpeg binary to use: PATH first, then the one bundled with imageio-ffmpeg."""
    on_path = shutil.which("ffmpeg")
    if on_path:
        return on_path
    try:
        import imageio_ffmpeg

        bundled = imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        bundled = None
    if bundled and os.path.isfile(bundled) and os.access(bundled, os.X_OK):
        return bundled
    raise FFmpegNotFoundError("ffmpeg was not found on PATH and imageio-ffmpeg has no usable binary; "
                              "install it (sudo apt-get install -y ffmpeg, or pip install imageio-ffmpeg).")


def file_header(path: Path) -> str:
    """What ffmpeg says about a file's container and streams, without decoding it ("" if it cannot say)."""
    try:
        _, _, err = child_processes.run([find_ffmpeg(), "-hide_banner", "-nostdin", "-i", str(path)])
    except OSError:
        return ""
    return err.decode("utf-8", "replace")


def ffmpeg_rate(value: Fraction) -> str:
    """A rate as ffmpeg reads it exactly: ``24``, ``5/2``, ``30000/1001``."""
    value = Fraction(value)
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


def probe(path: str | os.PathLike) -> VideoInfo:
    """Codec, pixel format, size, frame rate, frame count and duration of a video, read by decoding it."""
    path = Path(path)
    if not path.is_file():
        raise VideoError(f"{path} is not a file; give the path of a video.")
    code, _, err = child_processes.run([find_ffmpeg(), "-hide_banner", "-nostdin", "-i", str(path), "-f", "null", "-"])
    if code != 0:
        raise VideoError(f"{path} is not a video ffmpeg can read: {_last_line(err)}")
    log = err.decode("utf-8", "replace")
    stream = re.search(r"Stream #\S+.*?: Video: (\w+).*?, (\w+)(?:\([^)]*\))?, (\d+)x(\d+).*?, ([\d.]+) fps", log)
    duration = re.search(r"Duration: (\d+):(\d+):([\d.]+)", log)
    frames = re.findall(r"frame=\s*(\d+)", log)
    if not (stream and duration and frames):
        raise VideoError(f"ffmpeg's report on {path} could not be read; play the file to check it.")
    hours, minutes, seconds = duration.groups()
    sound = re.search(r"Stream #\S+.*?: Audio: (\w+)", log)
    return VideoInfo(path=path, codec=stream.group(1), pix_fmt=stream.group(2), width=int(stream.group(3)),
                     height=int(stream.group(4)), fps=float(stream.group(5)), frames=int(frames[-1]),
                     duration=int(hours) * 3600 + int(minutes) * 60 + float(seconds),
                     size_bytes=path.stat().st_size, audio=sound.group(1) if sound else "",
                     audio_duration=_audio_seconds(path) if sound else 0.0)


def _audio_seconds(path: Path) -> float:
    """Seconds of sound in ``path``'s first audio stream, by decoding it."""
    code, _, err = child_processes.run([find_ffmpeg(), "-hide_banner", "-nostdin", "-i", str(path), "-map", "0:a:0",
                                 "-f", "null", "-"])
    times = re.findall(r"time=(\d+):(\d+):([\d.]+)", err.decode("utf-8", "replace"))
    if code != 0 or not times:
        return 0.0
    hours, minutes, seconds = times[-1]
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def verify_video(info: VideoInfo, frames: int, duration: float, target: Path, sound: bool = False) -> None:
    problems = []
    if sound and info.audio != "aac":
        problems.append("no AAC soundtrack" if not info.audio else f"soundtrack {info.audio}, not aac")
    if sound and abs(info.audio_duration - duration) > 0.05:  # AAC is coded in frames of 1024 samples
        problems.append(f"{info.audio_duration:.2f} s of sound, not {duration:.2f} s")
    if info.codec != "h264":
        problems.append(f"codec {info.codec}, not h264")
    if info.pix_fmt != "yuv420p":
        problems.append(f"pixel format {info.pix_fmt}, not yuv420p")
    if info.frames != frames:
        problems.append(f"{info.frames} frames, not {frames}")
    if abs(info.duration - duration) > 0.5 / max(info.fps, 1e-9) + 0.005:  # ffmpeg prints durations to 0.01 s
        problems.append(f"{info.duration:.2f} s long, not {duration:.2f} s")
    if problems:
        raise VideoError(f"ffmpeg's video for {target} came out wrong ({'; '.join(problems)}), so it was not kept "
                         f"(the earlier video, if any, is untouched); this is a ttlesson or ffmpeg bug: please "
                         f"report it with the ffmpeg in use ({find_ffmpeg()}).")


def ffmpeg_failure(target: Path, stderr: bytes | None) -> str:
    said = _last_line(stderr)
    if "No space left on device" in (stderr or b"").decode("utf-8", "replace"):
        return f"ffmpeg could not write {target}: the disk holding it is full; free some space or give --output on " \
               "another disk (the earlier video, if any, is untouched)."
    return f"ffmpeg could not write {target}: {said} (the earlier video, if any, is untouched)."


def _last_line(stderr: bytes | None) -> str:
    lines = (stderr or b"").decode("utf-8", "replace").strip().splitlines()
    return lines[-1] if lines else "no error message"
