"""Frames → video with ffmpeg: H.264 in yuv420p (plays everywhere), checked after writing.

The ffmpeg binary is the one on ``PATH``, else the one the ``imageio-ffmpeg`` wheel ships (``IMAGEIO_FFMPEG_EXE``
points that wheel elsewhere). Commands are built with ffmpeg-python.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path

from . import manifest
from .errors import FFmpegNotFoundError, VideoError
from .fileio import PARTIAL_SUFFIX

DEFAULT_FPS = 2.0  # the lesson's pace: each frame shows for half a second
DEFAULT_CRF = 18  # visually near-lossless H.264
SMOOTH_FPS = 24  # the rate a crossfaded video is written at


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    codec: str
    pix_fmt: str
    width: int
    height: int
    fps: float
    frames: int
    duration: float
    size_bytes: int
    # The ffmpeg command that wrote the video (empty when only probed); not part of what the video is.
    command: tuple[str, ...] = field(default=(), compare=False)

    @property
    def command_line(self) -> str:
        """``command`` as one line a shell can run."""
        return shlex.join(self.command)

    @property
    def facts(self) -> str:
        """The video's facts without its path or byte size (stable from machine to machine)."""
        return (f"{self.frames} frames at {self.fps:g} fps = {self.duration:.1f} s, {self.codec}/{self.pix_fmt}, "
                f"{self.width}×{self.height}")

    def summary(self) -> str:
        return (f"{self.path} ({self.codec}, {self.pix_fmt}, {self.width}×{self.height}, {self.frames} frames "
                f"at {self.fps:g} fps = {self.duration:.1f} s, {self.size_bytes / 1024:.0f} KiB)")


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


def stitch(source: str | os.PathLike, output: str | os.PathLike | None = None, *, fps: float = DEFAULT_FPS,
           crf: int = DEFAULT_CRF, crossfade: float = 0.0) -> VideoInfo:
    """Stitch the frames of a render folder (or a folder of ``frame_NNN.png``) into an H.264 MP4 and check it.

    Each frame shows for ``1/fps`` seconds. ``crossfade`` > 0 dissolves each frame into the next over its last
    ``crossfade`` seconds (the video is then written at 24 fps); 0 cuts from frame to frame. The default output
    is ``<folder>/<storyboard name>.mp4``. The file appears only when ffmpeg succeeded.
    """
    import ffmpeg

    _check_settings(fps, crf, crossfade)
    frames_folder, out_dir, name = _locate_frames(Path(source).expanduser())
    count = _check_frames(frames_folder)
    target = Path(output).expanduser() if output else out_dir / f"{name}.mp4"
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}{PARTIAL_SUFFIX}.mp4")

    stream = (ffmpeg.input(str(frames_folder / "frame_%03d.png"), framerate=fps, start_number=0)
              .filter("scale", "trunc(iw/2)*2", "trunc(ih/2)*2"))  # yuv420p needs even width and height
    rate = fps
    if crossfade:
        # Each still is held, then blended into the next: repeating stills at 1/crossfade fps leaves exactly one
        # changing pair per frame, which the framerate filter dissolves (scene=100: never treat it as a cut).
        rate = SMOOTH_FPS
        stream = stream.filter("fps", fps=1 / crossfade).filter("framerate", fps=rate, scene=100)
    frames = round(count / fps * rate)
    stream = stream.output(str(partial), vcodec="libx264", pix_fmt="yuv420p", crf=crf, r=rate,
                           movflags="+faststart", format="mp4", **{"frames:v": frames})
    command = tuple(ffmpeg.compile(stream, cmd=find_ffmpeg(), overwrite_output=True))
    try:
        ffmpeg.run(stream, cmd=find_ffmpeg(), capture_stdout=True, capture_stderr=True, overwrite_output=True)
    except ffmpeg.Error as err:
        partial.unlink(missing_ok=True)
        raise VideoError(f"ffmpeg could not write {target}: {_last_line(err.stderr)}") from None
    os.replace(partial, target)
    info = replace(probe(target), command=command)
    _verify(info, frames, count / fps)
    return info


def probe(path: str | os.PathLike) -> VideoInfo:
    """Codec, pixel format, size, frame rate, frame count and duration of a video, read by decoding it."""
    import ffmpeg

    path = Path(path)
    try:
        _, err = ffmpeg.input(str(path)).output("-", format="null").run(
            cmd=find_ffmpeg(), capture_stdout=True, capture_stderr=True)
    except ffmpeg.Error as error:
        raise VideoError(f"{path} is not a video ffmpeg can read: {_last_line(error.stderr)}") from None
    log = err.decode("utf-8", "replace")
    stream = re.search(r"Stream #\S+.*?: Video: (\w+).*?, (\w+)(?:\([^)]*\))?, (\d+)x(\d+).*?, ([\d.]+) fps", log)
    duration = re.search(r"Duration: (\d+):(\d+):([\d.]+)", log)
    frames = re.findall(r"frame=\s*(\d+)", log)
    if not (stream and duration and frames):
        raise VideoError(f"ffmpeg's report on {path} could not be read; play the file to check it.")
    hours, minutes, seconds = duration.groups()
    return VideoInfo(path=path, codec=stream.group(1), pix_fmt=stream.group(2), width=int(stream.group(3)),
                     height=int(stream.group(4)), fps=float(stream.group(5)), frames=int(frames[-1]),
                     duration=int(hours) * 3600 + int(minutes) * 60 + float(seconds),
                     size_bytes=path.stat().st_size)


def _locate_frames(source: Path) -> tuple[Path, Path, str]:
    """(folder of frame PNGs, folder the video goes to, video name) for a render folder or a frames folder."""
    if not source.exists():
        raise VideoError(f"{source} does not exist; give the folder you rendered into (ttlesson render --out).")
    if (source / manifest.FRAMES_DIR).is_dir():
        book = manifest.load(source)
        if book is not None and not book.complete:
            missing = book.missing
            raise VideoError(f"{source} holds {book.frame_count - len(missing)} of {book.frame_count} frames "
                             f"({manifest.frame_filename(missing[0])} is missing); run ttlesson render again "
                             "to finish them (it resumes), then stitch.")
        return source / manifest.FRAMES_DIR, source, (book.storyboard if book and book.storyboard else "video")
    return source, source.parent if source.name == manifest.FRAMES_DIR else source, "video"


def _check_frames(folder: Path) -> int:
    """Number of frames; they must run frame_000.png, frame_001.png, … without a gap and share one size."""
    from PIL import Image

    indices = manifest.frame_indices(folder)
    if not indices:
        raise VideoError(f"{folder} has no frame_000.png, frame_001.png, … to stitch; render frames first "
                         "(ttlesson render) or name your images that way.")
    gap = next((expected for expected, found in enumerate(indices) if expected != found), None)
    if gap is not None:
        raise VideoError(f"{folder} has no {manifest.frame_filename(gap)}, so the frames after it would be "
                         "dropped; render or rename frames so they are numbered without a gap.")
    sizes = {}
    for index in indices:
        path = folder / manifest.frame_filename(index)
        try:
            with Image.open(path) as image:
                sizes.setdefault(image.size, path)
        except OSError:
            raise VideoError(f"{path} is not an image ffmpeg can read; render it again or remove it.") from None
    if len(sizes) > 1:
        (first, _), (other, other_path) = list(sizes.items())[:2]
        raise VideoError(f"{other_path} is {other[0]}×{other[1]} but earlier frames are {first[0]}×{first[1]}; "
                         "a video needs frames of one size.")
    return len(indices)


def _check_settings(fps: float, crf: int, crossfade: float) -> None:
    if not 0 < fps <= 120:
        raise VideoError(f"--fps {fps:g} is out of range; give frames per second from 0.1 to 120 (the lesson uses 2).")
    if isinstance(crf, bool) or not isinstance(crf, int) or not 0 <= crf <= 51:
        raise VideoError(f"--crf {crf!r} is out of range; give a whole number from 0 (lossless) to 51 "
                         f"(smallest); 18 is near-lossless.")
    if not 0 <= crossfade <= 1 / fps or (crossfade and crossfade < 1 / SMOOTH_FPS):
        raise VideoError(f"--crossfade {crossfade:g} does not fit: give 0 (cuts) or seconds from "
                         f"{1 / SMOOTH_FPS:.3f} to {1 / fps:g}, the time each frame is shown at --fps {fps:g}.")


def _verify(info: VideoInfo, frames: int, duration: float) -> None:
    problems = []
    if info.codec != "h264":
        problems.append(f"codec {info.codec}, not h264")
    if info.pix_fmt != "yuv420p":
        problems.append(f"pixel format {info.pix_fmt}, not yuv420p")
    if info.frames != frames:
        problems.append(f"{info.frames} frames, not {frames}")
    if abs(info.duration - duration) > 0.5 / info.fps:
        problems.append(f"{info.duration:.2f} s long, not {duration:.2f} s")
    if problems:
        raise VideoError(f"{info.path} came out wrong ({'; '.join(problems)}); check the ffmpeg build in use "
                         f"({find_ffmpeg()}).")


def _last_line(stderr: bytes | None) -> str:
    lines = (stderr or b"").decode("utf-8", "replace").strip().splitlines()
    return lines[-1] if lines else "no error message"
