"""Frame files: how a frame becomes a PNG in a render folder, and importing the PNGs tt-metal's demo wrote.

``store_frame`` is the one writer of frame files: PNG to a partial file, manifest entry, then rename, so a
finished PNG always has its manifest entry. ``render`` uses it for every frame, whichever process made it.

``import_demo_outputs`` is for people who ran tt-metal's SD 1.4 pytest demo by hand (the lesson's Step 5): the
demo writes ``input_data_{i}_512x512_ttnn.png`` into the folder it ran in (``i`` from 1 in current releases,
from 0 in the lesson's text); this turns them into ``frames/frame_000.png …`` with a manifest that says
honestly where they came from (backend ``tt-metal-demo``, the demo's fixed seed and guidance).
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

from . import manifest
from . import storyboard as storyboard_mod
from .env import __version__
from .errors import SettingsChangedError, TTLessonError
from .fileio import folder_lock, os_error_sentence, remove_partials, sha256_of, writable_folder, write_partial
from .inputs import user_path, whole_number
from .manifest import FrameRecord, Manifest
from .presenting import Presentable

DEMO_FILE = re.compile(r"^input_data_(\d{1,6})_(\d{1,5})x(\d{1,5})_ttnn\.png$")
DEMO_BACKEND = "tt-metal-demo"
DEMO_DEVICE = "Tenstorrent (tt-metal's pytest demo, run by hand; board not recorded)"
# What tt-metal's SD 1.4 demo fixes in both package layouts: one seed for every prompt, guidance 7.5, and its
# pytest parameter of 50 steps (pass steps= when the demo ran with another).
DEMO_SEED = 174
DEMO_GUIDANCE = 7.5
DEMO_STEPS = 50


def encode_png(image) -> bytes:
    """The PNG bytes of a PIL image; every path that makes frames encodes through here, so bytes match."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def store_frame(out_dir: Path, book: Manifest, record: FrameRecord, png: bytes) -> Path:
    """Write one frame's PNG and its manifest entry so that a crash leaves the old state or the new, never half."""
    path = manifest.frames_dir(out_dir) / manifest.frame_filename(record.index)
    partial = write_partial(path, png)
    before = book.frames.get(record.index)
    try:
        book.frames[record.index] = replace(record, sha256=sha256_of(png))
        book.save(out_dir)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        if before is None:
            book.frames.pop(record.index, None)
        else:
            book.frames[record.index] = before
        try:  # the manifest on disk may already list the frame that is not there: put back the one in memory
            book.save(out_dir)
        except OSError:
            pass  # the next run sees the frame missing (or changed) and says so
        raise
    return path


@dataclass
class ImportResult(Presentable):
    out_dir: Path
    manifest: Manifest
    sources: list[Path]  # the demo files, in frame order
    first_number: int  # 0 or 1: how the demo numbered its files

    def __str__(self) -> str:
        return (f"{len(self.sources)} demo images ({self.sources[0].name} …) imported as "
                f"{manifest.frames_dir(self.out_dir)}/frame_000.png … "
                f"(numbered from {self.first_number} in the demo)")


def import_demo_outputs(src: str | os.PathLike, out: str | os.PathLike, *, storyboard=None,
                        overwrite: bool = False, steps: int = DEMO_STEPS) -> ImportResult:
    """Copy tt-metal demo images from ``src`` into ``out/frames`` and write ``out/manifest.json``.

    ``storyboard`` (a Storyboard, a file or a built-in name) gives each frame its prompt: the demo's prompt
    file, in order. Without it the prompts are recorded as unknown (empty). Existing frames in ``out`` are
    replaced only with ``overwrite``.
    """
    steps = whole_number(steps, "--steps", 1, 1000, f" (tt-metal's demo runs {DEMO_STEPS})")
    src, out = user_path(src), user_path(out)
    numbered = _demo_files(src)
    sources = [numbered[number] for number in sorted(numbered)]
    sizes = [_demo_size(path) for path in sources]
    pngs = [_checked_png(path, *size) for path, size in zip(sources, sizes)]
    board = _storyboard(storyboard, len(sources))
    folder = manifest.frames_dir(out)
    writable_folder(out, "--out", fills=True)
    with folder_lock(out, "wait for it to finish, or choose another --out."):
        existing = manifest.frame_indices(folder)
        if existing and not overwrite:
            raise SettingsChangedError(f"{folder} already holds {len(existing)} frames; pass --overwrite "
                                       "(overwrite=True) to replace them with the demo's, or choose another --out.")
        try:
            folder.mkdir(parents=True, exist_ok=True)
            remove_partials(folder)
            for index in existing:
                if index >= len(sources):
                    (folder / manifest.frame_filename(index)).unlink(missing_ok=True)
            book = Manifest(storyboard=board.name if board else DEMO_BACKEND, frame_count=len(sources),
                            version=__version__)
            book.save(out)
            for index, ((width, height), png) in enumerate(zip(sizes, pngs)):
                record = FrameRecord(index=index, prompt=board[index].prompt if board else "", negative_prompt=None,
                                     seed=DEMO_SEED, steps=steps, guidance=DEMO_GUIDANCE, width=width, height=height,
                                     model="sd14", backend=DEMO_BACKEND, precision="tt-metal",
                                     device=DEMO_DEVICE)
                store_frame(out, book, record, png)
        except OSError as err:
            raise TTLessonError(f"The demo's images could not be imported: "
                                f"{os_error_sentence(err, err.filename or out)}.") from err
    return ImportResult(out_dir=out, manifest=book, sources=sources, first_number=min(numbered))


def _demo_files(src: Path) -> dict[int, Path]:
    if not src.is_dir():
        raise TTLessonError(f"{src} is not a folder; give the folder tt-metal's demo ran in "
                            "(where it wrote input_data_<i>_512x512_ttnn.png).")
    numbered = {}
    for path in src.iterdir():
        match = DEMO_FILE.match(path.name)
        if match and path.is_file():
            numbered[int(match.group(1))] = path
    if not numbered:
        raise TTLessonError(f"{src} holds no input_data_<i>_512x512_ttnn.png files from tt-metal's SD 1.4 demo; "
                            "give the folder the demo ran in (it writes its images to the current directory).")
    first = min(numbered)
    if first not in (0, 1):
        raise TTLessonError(f"The demo images in {src} start at {numbered[first].name}; the demo numbers from 1 "
                            "(or 0), so the earlier ones are missing: copy them here too.")
    expected = range(first, first + len(numbered))
    missing = [number for number in expected if number not in numbered]
    if missing:
        raise TTLessonError(f"{src} has no input_data_{missing[0]}_512x512_ttnn.png between "
                            f"{numbered[first].name} and {numbered[max(numbered)].name}; copy it here, or move "
                            "the later images away to import only the first ones.")
    return numbered


def _storyboard(storyboard, count: int):
    if storyboard is None:
        return None
    board = storyboard if isinstance(storyboard, storyboard_mod.Storyboard) else storyboard_mod.load(storyboard)
    if len(board) < count:
        raise TTLessonError(f"The storyboard has {len(board)} prompts but the demo made {count} images; give the "
                            "prompt file the demo ran with.")
    return board


def _demo_size(path: Path) -> tuple[int, int]:
    """(width, height) from the name of one of ``_demo_files``'s images."""
    match = DEMO_FILE.match(path.name)
    assert match is not None, "_demo_files keeps only the names DEMO_FILE matches"
    return int(match.group(2)), int(match.group(3))


def _checked_png(path: Path, width: int, height: int) -> bytes:
    from PIL import Image, UnidentifiedImageError

    try:
        data = path.read_bytes()
    except OSError as err:
        raise TTLessonError(f"{path} cannot be read ({err.strerror or err}); check its permissions.") from err
    try:
        with Image.open(io.BytesIO(data)) as image:
            size, kind = image.size, image.format
    except (UnidentifiedImageError, OSError):
        size, kind = None, None
    if kind != "PNG" or size != (width, height):
        raise TTLessonError(f"{path} is not a {width}x{height} PNG as its name says; re-run the demo or remove it.")
    return data
