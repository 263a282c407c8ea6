"""A workshop's finale: every attendee's film in one reel, each after a title card (``ttlesson collect``).

Reading ``collect`` top to bottom is the algorithm:

1. check the settings: the title card's seconds (a whole number of frames at the reel's 24 fps);
2. find the films, in a fixed order: a SOURCE is an attendee's work folder (``manifest.json``, ``frames/``, the
   notebooks' ``prompts.json`` or a finished video) or a drop folder of them, one per attendee, taken in order of
   their names. A work folder's film is the newest video under a name stitch or the notebooks write
   (``<storyboard>.mp4``, ``video.mp4``, the lesson's ``tenstorrent_worldsfair_1964.mp4``); a folder without one
   is skipped, saying why and what to run, and the others go on;
3. for each film: the attendee's name (the folder's, or ``names``), where its frames were made (``verify_frames``:
   every frame intact and made on a Tenstorrent device, or the devices the manifest records, or "origin unknown"
   when it has none or they no longer match the frames) and its length (``probe``, by decoding it);
4. check the output path as stitch checks a video's (``check_output``): a video name, not a folder, not among any
   film's frames, not a film itself, not a file other than an earlier ttlesson video;
5. draw one title card per film with Pillow (name, length, where made), the size of the reel: the largest film's;
6. run ffmpeg into a partial file only this process uses: each card held for the title's frames, each film at
   24 fps (constant), scaled and padded to the reel's size keeping its aspect, all joined in order; H.264 in
   yuv420p, without sound (the films' soundtracks are dropped);
7. decode the partial and check codec, pixel format, frame count and length: the films' lengths plus the title
   cards, to within one frame per film; only then rename it over the output. On any failure the old reel is
   untouched and the partial removed.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from .. import env, manifest
from ..errors import TTLessonError, VideoError
from ..fileio import remove_partials, resolved_path, staging_folder
from ..inputs import real_number, user_path
from ..presenting import Presentable
from .encode import CONTAINERS, DEFAULT_CRF, check_output, encode_checked, encoded_output, video_partial
from .ffmpeg import VideoInfo, find_ffmpeg, probe, verify_video
from .stills import FrameSource

if TYPE_CHECKING:
    from PIL import Image

REEL_FPS = 24  # the reel's one constant frame rate: every film is resampled to it
DEFAULT_TITLE_SECONDS = 2.0
MIN_TITLE_SECONDS, MAX_TITLE_SECONDS = 0.5, 60.0
REEL_NAME = "reel.mp4"  # the default output, in the drop folder
PLAIN_VIDEO_STEM = "video"  # stitch's default for a folder of frames without a manifest
CARD_BACKGROUND = (18, 18, 28)
CARD_NAME = (245, 245, 245)
CARD_DETAIL = (175, 175, 190)
CARD_TENSTORRENT = (170, 140, 255)


@dataclass(frozen=True)
class Film(Presentable):
    """One attendee's film: who made it, where its frames were made, and the video itself."""

    name: str
    folder: Path  # the attendee's work folder
    video: VideoInfo
    made_on: str = ""  # "Tenstorrent wormhole (chip 0)", "cpu", "cuda:0 (NVIDIA H100)"; "" when unknown
    on_tt: bool = False  # every frame intact and made on a Tenstorrent device
    note: str = ""  # why the origin is unknown

    @property
    def where(self) -> str:
        return f"made on {self.made_on}" if self.made_on else "origin unknown"

    @property
    def length(self) -> str:
        return f"{self.video.duration:.1f} s"

    def __str__(self) -> str:
        return f"{self.name}: {self.length}, {self.where} ({self.video.path})"


@dataclass(frozen=True)
class Skipped(Presentable):
    """A folder that holds no film to collect, and what to run so it does."""

    name: str
    folder: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.name}: {self.reason}"


@dataclass(frozen=True)
class Reel(Presentable):
    video: VideoInfo
    films: tuple[Film, ...]
    skipped: tuple[Skipped, ...] = ()
    title_seconds: float = DEFAULT_TITLE_SECONDS

    @property
    def path(self) -> Path:
        return self.video.path

    def table(self) -> list[str]:
        """The films as aligned rows: attendee, length, where made, the film's file."""
        rows = [("attendee", "length", "where made", "film")] + \
            [(film.name, film.length, film.where + (f" ({film.note})" if film.note else ""), str(film.video.path))
             for film in self.films]
        widths = [max(len(row[column]) for row in rows) for column in range(3)]
        return [f"{name.ljust(widths[0])}  {length.rjust(widths[1])}  {where.ljust(widths[2])}  {path}"
                for name, length, where, path in rows]

    def __str__(self) -> str:
        films = f"{len(self.films)} film{'s' if len(self.films) != 1 else ''}"
        lines = [f"{films}, each after a {self.title_seconds:g} s title card:"]
        lines += [f"  {row}" for row in self.table()]
        if self.skipped:
            lines.append(f"skipped {len(self.skipped)}:")
            lines += [f"  {skipped}" for skipped in self.skipped]
        lines.append(f"reel: {self.video}")
        return "\n".join(lines)


def collect(sources: Sequence[str | os.PathLike], output: str | os.PathLike | None = None, *,
            title_seconds: float = DEFAULT_TITLE_SECONDS, names: Sequence[str] | None = None) -> Reel:
    """Stitch every attendee's film found in ``sources`` into one reel, each film after a title card.

    A source is an attendee's work folder, or a drop folder holding one such folder per attendee (taken in order
    of their names; the folder's name is the attendee's). ``names`` renames the films found, in order. The title
    card shows the attendee's name, the film's length and where its frames were made, for ``title_seconds``. The
    default output is ``reel.mp4`` in the first source when that is a drop folder; an attendee's own folder is
    never chosen for it. The reel appears under its name only once it has been checked; an earlier file there is
    replaced only then, and only if it is a video ttlesson made.
    """
    import ffmpeg

    # 1. settings
    title_frames = check_title_seconds(title_seconds)
    sources = [sources] if isinstance(sources, (str, os.PathLike)) else list(sources)
    # 2. and 3. the films in order, each with its name, origin and length; the folders without one, and why
    films, skipped = find_films(sources)
    films = name_films(films, names)
    if not films:
        raise VideoError(_nothing_found(sources, skipped))
    # 4. the output, checked
    target = check_reel_output(output, sources, films)
    exe = find_ffmpeg()
    size = reel_size(films)
    counts = [reel_frames(film.video) for film in films]
    want_frames = sum(counts) + title_frames * len(films)
    # 5. the title cards, then 6. ffmpeg into a partial only this process uses
    remove_partials(target.parent, others_only=True)
    partial = video_partial(target)
    cards = None
    try:
        cards = staging_folder(target.parent, f"{target.name}.cards")
        card_paths = [save_card(film, size, cards / f"card_{number:03d}.png") for number, film in enumerate(films)]
        segments = []
        for card, film, count in zip(card_paths, films, counts):
            segments += [_card_stream(ffmpeg, card, title_frames), _film_stream(ffmpeg, film, size, count)]
        stream = encoded_output(ffmpeg, ffmpeg.concat(*segments, v=1, a=0), want_frames, want_frames / REEL_FPS,
                                None, DEFAULT_CRF, partial, CONTAINERS[target.suffix.lower()], str(REEL_FPS))
        command = tuple(ffmpeg.compile(stream, cmd=exe, overwrite_output=True))
        # 7. decode and check, then the reel takes its name

        def check(made: VideoInfo) -> None:
            verify_video(made, want_frames, want_frames / REEL_FPS, target)
            check_reel_length(made, films, title_frames, target)

        info = encode_checked(command, partial, target, check)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    finally:
        if cards is not None:
            shutil.rmtree(cards, ignore_errors=True)
    return Reel(replace(info, path=target, command=command), tuple(films), tuple(skipped),
                title_frames / REEL_FPS)


def check_title_seconds(title_seconds: float) -> int:
    """How many frames of the reel each title card holds; one sentence if ``title_seconds`` is out of range."""
    seconds = real_number(title_seconds, "--title-seconds", MIN_TITLE_SECONDS, MAX_TITLE_SECONDS,
                          " seconds (time enough to read a name; 2 is the default)", VideoError)
    return max(1, round(seconds * REEL_FPS))


# --- finding the films ---------------------------------------------------------------------------------------

def find_films(sources: Sequence[str | os.PathLike]) -> tuple[list[Film], list[Skipped]]:
    """The films of ``sources`` in order, and the folders skipped with the reason; a source that does not exist
    or is not a folder is one sentence, before anything is done."""
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    if not sources:
        raise VideoError("No SOURCE given; give attendees' work folders, or a drop folder holding one such folder "
                         "per attendee.")
    folders = [_source_folder(source) for source in sources]
    films: list[Film] = []
    skipped: list[Skipped] = []
    seen: dict[Path, str] = {}
    for folder in folders:
        for work in ([folder] if is_work_folder(folder) else attendee_folders(folder)):
            name = resolved_path(work).name or str(work)
            if resolved_path(work) in seen:
                skipped.append(Skipped(name, work, f"already collected (as {seen[resolved_path(work)]})"))
                continue
            seen[resolved_path(work)] = name
            found = film_in(work, name)
            if isinstance(found, Film):
                films.append(found)
            else:
                skipped.append(found)
    return films, skipped


def _source_folder(source: str | os.PathLike) -> Path:
    folder = user_path(source, "A SOURCE")
    if not folder.exists():
        raise VideoError(f"SOURCE {folder} does not exist; give an attendee's work folder or a drop folder of "
                         "them.")
    if not folder.is_dir():
        raise VideoError(f"SOURCE {folder} is a file; give the attendee's work folder that holds it (its "
                         "manifest.json, frames/ and video), or a drop folder of such folders.")
    return folder


def is_work_folder(folder: Path) -> bool:
    """Whether ``folder`` is one attendee's work: a render (manifest, frames), the notebooks' prompts, or a video
    under a name stitch or the notebooks write."""

    marks = (manifest.MANIFEST_NAME, manifest.FRAMES_DIR, env.STORYBOARD_FILE)
    return any((folder / mark).exists() for mark in marks) or bool(_videos(folder, video_stems(None)))


def attendee_folders(drop: Path) -> list[Path]:
    """The folders in a drop folder, by name (hidden ones, such as a running reel's cards, left out)."""
    try:
        entries = [path for path in drop.iterdir() if path.is_dir() and not path.name.startswith(".")]
    except OSError as err:
        raise VideoError(f"SOURCE {drop} cannot be read ({err.strerror or err}); check its permissions.") from err
    return sorted(entries, key=lambda path: (path.name.casefold(), path.name))


def video_stems(book: manifest.Manifest | None) -> list[str]:
    """The names a work folder's video can have: the notebooks', stitch's for a render (the storyboard's), and
    stitch's for a folder of frames."""

    stems = [Path(env.VIDEO_FILE).stem, PLAIN_VIDEO_STEM]
    if book is not None:
        stems.insert(1, manifest.safe_name(book.storyboard))
    return list(dict.fromkeys(stems))


def _videos(folder: Path, stems: list[str]) -> list[Path]:
    return [folder / f"{stem}{suffix}" for stem in stems for suffix in CONTAINERS if (folder / f"{stem}{suffix}")
            .is_file()]


def film_in(folder: Path, name: str) -> Film | Skipped:
    """The film of one work folder, or why there is none: the newest video under a known name, probed."""
    try:
        book = manifest.load(folder)
    except TTLessonError:  # a damaged manifest: the film can still be shown, its origin is unknown
        book = None
    videos = _videos(folder, video_stems(book))
    if not videos:
        return Skipped(name, folder, _why_no_video(folder, book))
    newest = max(videos, key=lambda path: path.stat().st_mtime_ns)  # ties: the first name listed
    try:
        info = probe(newest)
    except TTLessonError as err:
        return Skipped(name, folder, f"{newest.name} cannot be played ({str(err).rstrip('.')}); stitch it again: "
                       f"ttlesson stitch {folder}")
    if reel_frames(info) < 1:
        return Skipped(name, folder, f"{newest} lasts under one frame at {REEL_FPS} fps; stitch it again: "
                       f"ttlesson stitch {folder}")
    made_on, on_tt, note = where_made(folder)
    return Film(name, folder, info, made_on, on_tt, note)


def _why_no_video(folder: Path, book: manifest.Manifest | None) -> str:
    stitch = f"ttlesson stitch {folder}"
    if book is not None and not book.complete:
        done = book.frame_count - len(book.missing)
        return (f"no video yet, and {done} of {book.frame_count} frames made: finish the render (ttlesson render "
                f"resumes), then {stitch}")
    if not manifest.frames_dir(folder).is_dir() and not manifest.manifest_path(folder).exists():
        return f"no frames yet: render them (ttlesson render --out {folder}), then {stitch}"
    others = sorted(path.name for path in folder.iterdir() if path.suffix.lower() in CONTAINERS and path.is_file()
                    and not path.name.startswith("."))
    if others:
        return (f"no video yet under a name collect looks for ({', '.join(others)} is not one of "
                f"{', '.join(stem + '.mp4' for stem in video_stems(book))}): run {stitch}")
    return f"no video yet: run {stitch}"


def where_made(folder: Path) -> tuple[str, bool, str]:
    """Where a work folder's frames were made, from its manifest: (devices, all intact on Tenstorrent, note)."""
    from ..manifest import verify_frames
    from ..tenstorrent.boards import is_tt_device

    try:
        origins = verify_frames(folder)
    except (TTLessonError, OSError):
        exists = manifest.manifest_path(folder).exists()
        return "", False, "manifest.json unreadable" if exists else "no manifest.json"
    if origins.damaged:
        return "", False, f"{len(origins.damaged)} of {origins.frame_count} frames changed since they were made"
    if len(origins.frames) < origins.frame_count:
        return "", False, f"{len(origins.frames)} of {origins.frame_count} frames made"
    shown = list(dict.fromkeys(_tenstorrent(device or backend) if backend == "tt" or is_tt_device(device)
                               else device or backend for backend, device in origins.by_maker))
    more = f" + {len(shown) - 2} more" if len(shown) > 2 else ""
    return " + ".join(shown[:2]) + more, origins.all_on_tt, ""


def _tenstorrent(device: str) -> str:
    return device if device.lower().startswith("tenstorrent") else f"Tenstorrent {device}"


def name_films(films: list[Film], names: Sequence[str] | None) -> list[Film]:
    """The films with the names given, in order; one sentence when there are more or fewer names than films."""
    if names is None:
        return films
    if isinstance(names, str):
        names = [names]
    cleaned = [" ".join(str(name).split()) for name in names]
    if any(not name for name in cleaned):
        raise VideoError("--names holds an empty name; give each film's attendee a name.")
    if len(cleaned) != len(films):
        found = ", ".join(film.name for film in films) or "none"
        raise VideoError(f"--names gives {len(cleaned)} name{'s' if len(cleaned) != 1 else ''} but "
                         f"{len(films)} film{'s' if len(films) != 1 else ''} were found ({found}); give one name "
                         "per film, in this order.")
    return [replace(film, name=name) for film, name in zip(films, cleaned)]


def _nothing_found(sources: Sequence[str | os.PathLike], skipped: list[Skipped]) -> str:
    where = ", ".join(str(source) for source in sources)
    if not skipped:
        return (f"No film found in {where}; give attendees' work folders (manifest.json, frames/ and the video) "
                "or a drop folder holding one such folder per attendee.")
    first, others = skipped[0], len(skipped) - 1
    more = f", and {others} more folder{'s' if others > 1 else ''} skipped" if others else ""
    return f"No film to collect: {first.folder} was skipped ({first.reason}){more}."


# --- the output ----------------------------------------------------------------------------------------------

def check_reel_output(output: str | os.PathLike | None, sources: Sequence[str | os.PathLike],
                      films: list[Film]) -> Path:
    """The reel's path, checked as stitch checks a video's against every film's frames; never a film itself."""
    if output is None:
        first = user_path(sources[0], "A SOURCE")
        if is_work_folder(first):
            raise VideoError(f"Give --output FILE: the first SOURCE, {first}, is an attendee's own folder, and the "
                             f"reel does not belong in it (a drop folder gets {REEL_NAME}).")
        output = first / REEL_NAME
    target = user_path(output, "--output")
    for film in films:
        if resolved_path(target) == resolved_path(film.video.path):
            raise VideoError(f"--output {target} is {film.name}'s film, which the reel is made from; choose "
                             "another path.")
    for film in films:
        frames = manifest.frames_dir(film.folder)
        check_output(target, FrameSource(frames, frames, "reel", film.folder))
    return target


# --- the title cards -------------------------------------------------------------------------------------------

def reel_size(films: list[Film]) -> tuple[int, int]:
    """The largest film's width and height (by area; the first of equals), made even for yuv420p."""
    largest = max(films, key=lambda film: film.video.width * film.video.height)
    return max(2, largest.video.width // 2 * 2), max(2, largest.video.height // 2 * 2)


def reel_frames(video: VideoInfo) -> int:
    """How many frames of the reel a film fills: its length at 24 fps, to the nearest frame."""
    return round(video.duration * REEL_FPS)


def card_lines(film: Film) -> list[tuple[str, float, tuple[int, int, int]]]:
    """What a title card says: (text, its height as a share of the card's, colour)."""
    return [(film.name, 0.16, CARD_NAME), (film.length, 0.08, CARD_DETAIL),
            (film.where, 0.08, CARD_TENSTORRENT if film.on_tt else CARD_DETAIL)]


def draw_card(film: Film, size: tuple[int, int]):
    """The film's title card as a Pillow image of ``size``: its lines centred, each fitted to the card's width."""
    from PIL import Image

    width, height = size
    card = Image.new("RGB", size, CARD_BACKGROUND)
    masks = [(_fit(*_line_mask(text, max(6, round(height * share))), round(width * 0.9),
                   max(1, round(height * share))), colour) for text, share, colour in card_lines(film)]
    gap = max(1, round(height * 0.05))
    top = (height - sum(mask.height for mask, _ in masks) - gap * (len(masks) - 1)) // 2
    for mask, colour in masks:
        left = (width - mask.width) // 2
        card.paste(colour, (left, top, left + mask.width, top + mask.height), mask)
        top += mask.height + gap
    return card


def save_card(film: Film, size: tuple[int, int], path: Path) -> Path:
    draw_card(film, size).save(path, compress_level=1)
    return path


def _line_mask(text: str, pixels: int) -> tuple[Image.Image, bool]:
    """``text`` drawn white on black about ``pixels`` tall, and whether the font scales: Pillow's own font at that
    size (Pillow ≥ 10.1), else its small bitmap font, to be scaled up by ``_fit``."""
    from PIL import Image, ImageDraw

    font, scalable = _font(pixels)
    left, top, right, bottom = ImageDraw.Draw(Image.new("L", (1, 1))).textbbox((0, 0), text, font=font)
    mask = Image.new("L", (max(1, int(right - left)), max(1, int(bottom - top))))
    ImageDraw.Draw(mask).text((-left, -top), text, fill=255, font=font)
    return mask, scalable


def _font(pixels: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=pixels), True
    except (TypeError, OSError, ImportError):  # Pillow < 10.1, or built without FreeType
        return ImageFont.load_default(), False


def _fit(mask, scalable: bool, width: int, height: int):
    """``mask`` made to fit ``width`` × ``height``: shrunk when too big; a bitmap font's also grown to fill it."""
    from PIL import Image

    scale = min(width / mask.width, height / mask.height)
    if scalable and scale >= 1:
        return mask
    size = (max(1, round(mask.width * scale)), max(1, round(mask.height * scale)))
    return mask.resize(size, Image.Resampling.NEAREST if scale > 1 else Image.Resampling.LANCZOS)


# --- ffmpeg --------------------------------------------------------------------------------------------------

def _card_stream(ffmpeg, card: Path, frames: int):
    """The title card held for ``frames`` frames of the reel."""
    return (ffmpeg.input(str(card), loop=1, framerate=REEL_FPS)
            .trim(end_frame=frames)
            .filter("setpts", "PTS-STARTPTS")
            .filter("setsar", "1"))


def _film_stream(ffmpeg, film: Film, size: tuple[int, int], frames: int):
    """The film's picture at 24 fps, scaled and padded to ``size`` keeping its aspect, exactly ``frames`` long:
    the rate conversion can leave it a frame short, so its last frame is held, then the whole is cut."""
    width, height = size
    return (ffmpeg.input(str(film.video.path)).video
            .filter("setpts", "PTS-STARTPTS")
            .filter("fps", fps=REEL_FPS)
            .filter("scale", width, height, force_original_aspect_ratio="decrease")
            .filter("pad", width, height, "(ow-iw)/2", "(oh-ih)/2", color="black")
            .filter("setsar", "1")
            .filter("tpad", stop=REEL_FPS, stop_mode="clone")
            .trim(end_frame=frames)
            .filter("setpts", "PTS-STARTPTS"))


def check_reel_length(info: VideoInfo, films: list[Film], title_frames: int, target: Path) -> None:
    """The reel lasts as long as its films and title cards, to within one frame per film; else nothing is kept."""
    want = sum(film.video.duration for film in films) + len(films) * title_frames / REEL_FPS
    if abs(info.duration - want) > len(films) / REEL_FPS + 0.005:  # ffmpeg prints durations to 0.01 s
        raise VideoError(f"ffmpeg's reel for {target} lasts {info.duration:.2f} s, not the {want:.2f} s of its films "
                         f"and title cards, so it was not kept (the earlier reel, if any, is untouched); this is a "
                         f"ttlesson or ffmpeg bug: please report it with the ffmpeg in use ({find_ffmpeg()}).")
