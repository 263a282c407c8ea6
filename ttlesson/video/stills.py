"""The stills a video is made from: found (a render folder, its ``frames/``, or a plain folder of
``frame_NNN.png``) and checked (against the render's manifest, or by decoding each PNG), never while a render is
writing them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .. import manifest
from ..errors import VideoError
from ..fileio import LOCK_NAME, folder_lock
from ..inputs import user_path


@dataclass
class FrameSource:
    """Where the stills are, and how to check them: against a manifest, or by decoding them."""

    folder: Path  # the folder holding frame_000.png …
    video_dir: Path  # where the default video goes
    name: str  # the default video's name, safe
    render_dir: Path | None = None  # the render folder, when there is a manifest
    book: manifest.Manifest | None = None

    def keyframes(self, count: int) -> list[int]:
        """Frame indices of the keyframes: from the manifest, or every frame of a plain folder."""
        return self.book.keyframes if self.book is not None else list(range(count))

    def check(self) -> int:
        """How many stills; raises naming the first frame that is missing, changed or not a whole PNG."""
        if self.book is not None:
            assert self.render_dir is not None, "a manifest is read from a render folder"
            manifest.require_frames(self.render_dir, self.book)
            sizes = {(record.width, record.height) for record in self.book.frames.values()}
            if len(sizes) > 1:
                raise VideoError(f"{self.render_dir}'s frames have {len(sizes)} different sizes; a video needs "
                                 "frames of one size: render them again with one --size (--overwrite).")
            return self.book.frame_count
        return _check_plain_frames(self.folder)


def locate_frames(source: str | os.PathLike) -> FrameSource:
    """The frames of a render folder (or its ``frames/``), or of a plain folder of ``frame_NNN.png``."""
    source = user_path(source, "The frames folder")
    if not source.exists():
        raise VideoError(f"{source} does not exist; give the folder you rendered into (ttlesson render --out).")
    if not source.is_dir():
        raise VideoError(f"{source} is a file; give the folder you rendered into (ttlesson render --out), or a "
                         "folder of frame_000.png, frame_001.png, ….")
    inside_render = source.name == manifest.FRAMES_DIR and any(
        path.exists() for path in (manifest.manifest_path(source.parent), source.parent / LOCK_NAME))
    render_dir = source.parent if inside_render else source
    _not_being_rendered(render_dir)
    frames_dir = manifest.frames_dir(render_dir)
    book = manifest.load(render_dir)
    if book is None:
        if frames_dir.is_dir():  # a render folder whose manifest is gone: its frames are checked by decoding them
            return FrameSource(frames_dir, render_dir, "video")
        return FrameSource(source, source.parent if source.name == manifest.FRAMES_DIR else source, "video")
    if not frames_dir.is_dir():
        raise VideoError(f"{render_dir} has a manifest but no {manifest.FRAMES_DIR}/ folder; run ttlesson render "
                         "again to make the frames, then stitch.")
    if not book.complete:
        missing = book.missing
        raise VideoError(f"{render_dir} holds {book.frame_count - len(missing)} of {book.frame_count} frames "
                         f"({manifest.frame_filename(missing[0])} is missing); run ttlesson render again to finish "
                         "them (it resumes), then stitch." if book.frame_count else
                         f"{render_dir} has no frames yet; render them first (ttlesson render).")
    return FrameSource(frames_dir, render_dir, manifest.safe_name(book.storyboard), render_dir, book)


def checked_stills(frames: FrameSource) -> int:
    """How many stills there are, each checked, once no render is writing them."""
    if frames.render_dir:  # a render started since locate_frames looked
        _not_being_rendered(frames.render_dir)
    return frames.check()


def _not_being_rendered(folder: Path) -> None:
    """A render running in ``folder`` now would change the frames under ffmpeg: name it, before its half-made
    frames are judged. Only a folder a render has used has the lock file; no other gets one."""
    if (folder / LOCK_NAME).exists():
        with folder_lock(folder, "wait for it to finish, then stitch."):
            pass


def _check_plain_frames(folder: Path) -> int:
    """Frames of a folder without a manifest: frame_000.png, frame_001.png, … without a gap, whole PNGs of one size."""
    from PIL import Image

    indices = manifest.frame_indices(folder)
    if not indices:
        raise VideoError(f"{folder} has no frame_000.png, frame_001.png, … to stitch; render frames first "
                         "(ttlesson render) or name your images that way.")
    gap = next((expected for expected, found in enumerate(indices) if expected != found), None)
    if gap is not None:
        raise VideoError(f"{folder} has no {manifest.frame_filename(gap)}, so the frames after it would be "
                         "dropped; render or rename frames so they are numbered without a gap.")
    sizes: dict[tuple[int, int], Path] = {}
    for index in indices:
        path = folder / manifest.frame_filename(index)
        try:
            with Image.open(path) as image:
                kind, size = image.format, image.size
                image.load()  # decodes every byte: a truncated file fails here, not in ffmpeg
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
            raise VideoError(f"{path} is not a whole image (truncated or damaged); render it again or replace it.") \
                from err
        if kind != "PNG":
            raise VideoError(f"{path} is a {kind} file named .png; save it as a real PNG (or render it again).")
        sizes.setdefault(size, path)
    if len(sizes) > 1:
        (first, _), (other, other_path) = list(sizes.items())[:2]
        raise VideoError(f"{other_path} is {other[0]}×{other[1]} but earlier frames are {first[0]}×{first[1]}; "
                         "a video needs frames of one size.")
    return len(indices)
