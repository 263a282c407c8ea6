"""The render folder's layout and its ``manifest.json``: what made each frame, so runs resume and can be verified.

A render folder holds ``frames/frame_000.png, frame_001.png, …`` and ``manifest.json``. The manifest records,
per frame, the settings that determine its pixels (prompt, negative prompt, seed, steps, guidance, size,
model, backend, scheduler, precision), the device that really ran it, how long it took and the PNG's SHA-256.
In a keyframe walk (``ttlesson.walk``) a record also says whether the frame is a keyframe (``keyframe``: its
storyboard index) or an in-between (``pair`` of keyframe indices and ``weight``, with the second keyframe's
prompt, negative prompt and seed in ``to_*``); mixed seed mode adds ``noise_base`` and ``noise_mix``; colour
coherence adds ``colour_match`` and ``colour_reference``. Records written before these existed read with defaults.

A manifest is checked as it is read (``load``): every key has the type the schema below gives it, counts are
bounded, indices are unique and inside the storyboard; anything else is one sentence naming the file and the
key. Nothing the file says becomes a path: frame files are named from their index, and the video from the
storyboard's name made safe (``safe_name``). ``check_frames`` compares the PNGs on disk with their records.

``verify_frames``: which backend and device made each frame of a render folder, from its manifest (the lesson's
Step 5), and a refusal when they were not the hardware asked for.
"""

from __future__ import annotations

import html
import json
import numbers
import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import cast

from .errors import FrameCheckError, FrameVerificationError, TTLessonError
from .fileio import read_user_file, sha256_file, write_atomic
from .inputs import shown, user_path
from .presenting import Presentable, lever
from .tenstorrent.boards import is_tt_device

MANIFEST_NAME = "manifest.json"
FRAMES_DIR = "frames"
SCHEMA = 1  # bump when a reader of the old schema would misread the new one; add fields with defaults instead
MAX_FRAMES = 100_000  # an hour at 24 fps; a manifest asking for more is damaged
MAX_MANIFEST_BYTES = 256 * 1024 ** 2
# What a record says about where its frame sits and how making it went, not what it looks like: recorded, never
# compared (the same settings give the same pixels on any device). Every other field of a record is its identity.
RECORDED_NOT_COMPARED = ("index", "device", "seconds", "warmup", "sha256", "keyframe", "pair")


def frame_filename(index: int) -> str:
    return f"frame_{index:03d}.png"


_FRAME_FILE = re.compile(r"^frame_([0-9]{3,6})\.png$")


def frame_indices(folder: Path) -> list[int]:
    """Indices of the ``frame_NNN.png`` files in ``folder`` (files only, names as ttlesson writes them), sorted."""
    found = []
    for path in Path(folder).glob("frame_*.png"):
        match = _FRAME_FILE.match(path.name)
        if match and frame_filename(int(match.group(1))) == path.name and path.is_file():
            found.append(int(match.group(1)))
    return sorted(found)


def frames_dir(out_dir: Path) -> Path:
    return Path(out_dir) / FRAMES_DIR


def manifest_path(out_dir: Path) -> Path:
    return Path(out_dir) / MANIFEST_NAME


def safe_name(name: str, default: str = "video") -> str:
    """A file name made from ``name`` that stays in its folder: no separators, no leading dot, no control
    characters, at most 100 characters (``"../../x"`` → ``"x"``)."""
    last = re.split(r"[\\/]", str(name))[-1]
    cleaned = re.sub(r"[\x00-\x1f\x7f:*?\"<>|]", "_", last).strip().lstrip(".").strip()
    return cleaned[:100] or default


@dataclass(frozen=True)
class FrameRecord:
    """One frame as the manifest records it: every field of the ``FrameRequest`` it was made from
    (``ttlesson.backends``), what made it, and how that went (``RECORDED_NOT_COMPARED``). A field added here is part
    of the frame's identity unless it is named there; it needs a default (older manifests lack it) and its check in
    ``RECORD_SCHEMA``."""

    index: int
    prompt: str
    negative_prompt: str | None
    seed: int
    steps: int
    guidance: float
    width: int
    height: int
    model: str
    backend: str
    scheduler: str = "pndm"  # ttlesson.models.schedulers
    precision: str = "float32"  # the numerics (backends.torch.precision): float32, bfloat16, openvino-bf16, tt-metal
    device: str = ""
    seconds: float = 0.0
    warmup: bool = False  # first frame of its run: its seconds include compilation and cache warm-up
    sha256: str = ""
    # The walk (ttlesson.walk): a keyframe has its storyboard index here; an in-between has pair and weight, and
    # the second keyframe's prompt, negative prompt and seed (the first's are prompt, negative_prompt, seed).
    keyframe: int | None = None
    pair: tuple[int, int] | None = None
    weight: float = 0.0
    to_prompt: str | None = None
    to_negative_prompt: str | None = None
    to_seed: int | None = None
    noise_base: int | None = None  # mixed seed mode: the shared base noise's seed
    noise_mix: float = 0.0  # mixed seed mode: the share of the frame's own noise
    colour_match: str = ""  # "lab": an in-between's colours moved between its keyframes' (ttlesson.walk); "" not
    colour_reference: str = ""  # its two keyframes, and a digest of their identities: "frames 0 and 5 (1a2b…)"

    @property
    def is_keyframe(self) -> bool:
        return self.pair is None

    @property
    def file(self) -> str:
        return f"{FRAMES_DIR}/{frame_filename(self.index)}"

    def identity(self) -> dict:
        """The fields that decide what the frame looks like, by name: a frame is reused only when all match."""
        return {name: getattr(self, name) for name in identity_fields(type(self))}

    def differences(self, other: FrameRecord) -> list[str]:
        """Human-readable ``name: old → new`` for each identity field that differs."""
        return [f"{name} {getattr(self, name)!r} → {getattr(other, name)!r}" for name in identity_fields(type(self))
                if getattr(self, name) != getattr(other, name)]


def identity_fields(record_type: type[FrameRecord]) -> tuple[str, ...]:
    """The fields of a record type that are its frame's identity: all but ``RECORDED_NOT_COMPARED``, in order."""
    return tuple(item.name for item in fields(record_type) if item.name not in RECORDED_NOT_COMPARED)


IDENTITY_FIELDS = identity_fields(FrameRecord)


@dataclass
class Manifest:
    storyboard: str = ""
    frame_count: int = 0
    frames: dict[int, FrameRecord] = field(default_factory=dict)
    version: str = ""

    @property
    def complete(self) -> bool:
        return self.frame_count > 0 and all(i in self.frames for i in range(self.frame_count))

    @property
    def missing(self) -> list[int]:
        return [i for i in range(self.frame_count) if i not in self.frames]

    @property
    def keyframes(self) -> list[int]:
        """Frame indices of the keyframes, in order (every frame of a render without a walk)."""
        return [index for index, record in sorted(self.frames.items()) if record.is_keyframe]

    @property
    def video_name(self) -> str:
        """The default video's file name: the storyboard's name, made safe, with ``.mp4``."""
        return f"{safe_name(self.storyboard)}.mp4"

    def to_json(self) -> str:
        body = {
            "schema": SCHEMA,
            "ttlesson": self.version,
            "storyboard": self.storyboard,
            "frame_count": self.frame_count,
            "frames": [dict(file=record.file, **asdict(record)) for _, record in sorted(self.frames.items())],
        }
        return json.dumps(body, indent=2, ensure_ascii=False) + "\n"

    def save(self, out_dir: Path) -> Path:
        return write_atomic(manifest_path(out_dir), self.to_json())


# --- reading, with every value checked ----------------------------------------------------------------------

def _text(value) -> bool:
    return isinstance(value, str)


def _text_or_null(value) -> bool:
    return value is None or isinstance(value, str)


def _whole(low: int, high: int) -> Callable[[object], bool]:
    return lambda value: isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _real(low: float, high: float) -> Callable[[object], bool]:
    return lambda value: (isinstance(value, numbers.Real) and not isinstance(value, bool)
                          and low <= cast(float, value) <= high)


def _optional(check: Callable[[object], bool]) -> Callable[[object], bool]:
    return lambda value: value is None or check(value)


def _pair(value) -> bool:
    return (isinstance(value, list) and len(value) == 2 and all(_whole(0, MAX_FRAMES - 1)(v) for v in value)
            and value[1] == value[0] + 1)


def _sha(value) -> bool:
    return isinstance(value, str) and re.fullmatch(r"[0-9a-f]{64}|", value) is not None


# The schema of one frame record: key → (check, what it must be, required). Keys not listed are ignored, so a
# later ttlesson can add fields (with defaults in FrameRecord) without breaking this reader.
RECORD_SCHEMA: dict[str, tuple[Callable[[object], bool], str, bool]] = {
    "index": (_whole(0, MAX_FRAMES - 1), f"a whole number from 0 to {MAX_FRAMES - 1}", True),
    "prompt": (_text, "text", True),
    "negative_prompt": (_text_or_null, "text or null", True),
    "seed": (_whole(0, 2 ** 32 - 1), "a whole number from 0 to 4294967295", True),
    "steps": (_whole(1, 1000), "a whole number from 1 to 1000", True),
    "guidance": (_real(0, 50), "a number from 0 to 50", True),
    "width": (_whole(64, 8192), "a whole number from 64 to 8192", True),
    "height": (_whole(64, 8192), "a whole number from 64 to 8192", True),
    "model": (_text, "text", True),
    "backend": (_text, "text", True),
    "scheduler": (_text, "text", False),
    "precision": (_text, "text", False),
    "device": (_text, "text", False),
    "seconds": (_real(0, 1e9), "a number of seconds", False),
    "warmup": (lambda value: isinstance(value, bool), "true or false", False),
    "sha256": (_sha, "64 hexadecimal digits", False),
    "keyframe": (_optional(_whole(0, MAX_FRAMES - 1)), "null or a storyboard index", False),
    "pair": (_optional(_pair), "null or two consecutive keyframe indices [k, k + 1]", False),
    "weight": (_real(0, 1), "a number from 0 to 1", False),
    "to_prompt": (_text_or_null, "text or null", False),
    "to_negative_prompt": (_text_or_null, "text or null", False),
    "to_seed": (_optional(_whole(0, 2 ** 32 - 1)), "null or a whole number from 0 to 4294967295", False),
    "noise_base": (_optional(_whole(0, 2 ** 32 - 1)), "null or a whole number from 0 to 4294967295", False),
    "noise_mix": (_real(0, 1), "a number from 0 to 1", False),
    "colour_match": (_text, "text", False),
    "colour_reference": (_text, "text", False),
}


def load(out_dir: Path) -> Manifest | None:
    """The folder's manifest, or ``None`` when it has none yet; a damaged one is one sentence naming the key."""
    path = manifest_path(out_dir)
    if not path.exists() and not path.is_symlink():
        return None
    try:
        if path.is_dir():
            raise _Bad("is a folder, not a file")
        if path.is_file() and path.stat().st_size > MAX_MANIFEST_BYTES:
            raise _Bad(f"is larger than any manifest ttlesson writes ({path.stat().st_size} bytes)")
        text = read_user_file(path, "The manifest", MAX_MANIFEST_BYTES).decode("utf-8")
    except _Bad as bad:
        raise TTLessonError(f"{path} {bad}; move it away and render again, or choose another output folder.") \
            from bad
    except UnicodeDecodeError as err:
        raise TTLessonError(f"{path} is not UTF-8 text (byte {err.start}); move it away and render again, or "
                            "choose another output folder.") from err
    try:
        return parse(text)
    except _Bad as bad:
        raise TTLessonError(f"{path} is not a manifest ttlesson can read: {bad}; {bad.fix}.") from bad


class _Bad(Exception):
    """What is wrong with a manifest, in words, before the file's name is put in front; and the fix."""

    def __init__(self, what: str, fix: str = "move it away and render again, or choose another output folder"):
        super().__init__(what)
        self.fix = fix


def parse(text: str) -> Manifest:
    """A manifest from its JSON text; raises ``_Bad`` naming the key that is wrong."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise _Bad(f"invalid JSON at line {err.lineno}, column {err.colno} ({err.msg})") from err
    except RecursionError as err:
        raise _Bad("its JSON is nested too deeply") from err
    except ValueError as err:  # e.g. a number with more digits than Python converts
        raise _Bad(f"invalid JSON ({str(err).split(':')[0]})") from err
    if not isinstance(data, dict):
        raise _Bad("the top level is not an object")
    schema = data.get("schema", SCHEMA)
    if not _whole(1, 1_000_000)(schema):
        raise _Bad('key "schema" must be a whole number')
    if schema > SCHEMA:
        raise _Bad(f"it uses schema {schema}, newer than this ttlesson reads ({SCHEMA})",
                   "upgrade ttlesson (pip install -U ttlesson), or choose another output folder")
    storyboard = data.get("storyboard", "")
    version = data.get("ttlesson", "")
    for key, value in (("storyboard", storyboard), ("ttlesson", version)):
        if not isinstance(value, str):
            raise _Bad(f'key "{key}" must be text')
    if "frame_count" not in data:
        raise _Bad('key "frame_count" is missing')
    frame_count = data["frame_count"]
    if not _whole(0, MAX_FRAMES)(frame_count):
        raise _Bad(f'key "frame_count" must be a whole number from 0 to {MAX_FRAMES}')
    items = data.get("frames")
    if not isinstance(items, list):
        raise _Bad('key "frames" must be a list')
    if len(items) > frame_count:
        raise _Bad(f'key "frames" lists {len(items)} frames but "frame_count" is {frame_count}')
    frames: dict[int, FrameRecord] = {}
    for position, item in enumerate(items):
        record = _record(item, f"frames[{position}]")
        if record.index >= frame_count:
            raise _Bad(f'key "frames[{position}].index" is {record.index}, beyond "frame_count" {frame_count}')
        if record.index in frames:
            raise _Bad(f'key "frames[{position}].index" repeats frame {record.index}')
        frames[record.index] = record
    return Manifest(storyboard=storyboard, frame_count=frame_count, frames=frames, version=version)


def _record(item: object, where: str) -> FrameRecord:
    if not isinstance(item, dict):
        raise _Bad(f'key "{where}" must be an object, not {_kind(item)}')
    values = {}
    for key, (check, what, required) in RECORD_SCHEMA.items():
        if key not in item:
            if required:
                raise _Bad(f'key "{where}.{key}" is missing')
            continue
        if not check(item[key]):
            raise _Bad(f'key "{where}.{key}" must be {what}, not {_kind(item[key])}')
        values[key] = item[key]
    values = {**_before_precision(values), **values}  # a frame from before they were recorded
    values["guidance"] = float(values["guidance"])
    for key in ("seconds", "weight", "noise_mix"):
        if key in values:
            values[key] = float(values[key])
    if values.get("pair") is not None:
        values["pair"] = tuple(values["pair"])
    return FrameRecord(**values)


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number out of range" if isinstance(value, int) else f"the number {value:g}"
    if isinstance(value, str):
        return f"the text {shown(value)}"
    return "a list" if isinstance(value, list) else "an object"


# --- the frames on disk against their records ---------------------------------------------------------------

@dataclass(frozen=True)
class FrameProblem:
    index: int
    what: str  # "is missing", "was changed after ttlesson made it"


def check_frames(out_dir: Path, book: Manifest) -> list[FrameProblem]:
    """Each recorded frame whose PNG is gone or no longer has the recorded SHA-256."""
    folder = frames_dir(out_dir)
    problems = []
    for index, record in sorted(book.frames.items()):
        path = folder / frame_filename(index)
        if not path.is_file():
            problems.append(FrameProblem(index, "is missing"))
        elif not record.sha256:
            problems.append(FrameProblem(index, "has no SHA-256 in the manifest to check it against"))
        else:
            try:
                same = sha256_file(path) == record.sha256
            except OSError:
                same = False
            if not same:
                problems.append(FrameProblem(index, "was changed after ttlesson made it (its SHA-256 differs)"))
    return problems


def frames_problem_sentence(out_dir: Path, problems: list[FrameProblem]) -> str:
    """One sentence naming the first bad frame, how many there are, and the fix."""
    first = problems[0]
    others = f" (and {len(problems) - 1} more frames)" if len(problems) > 1 else ""
    fix = ("run the same ttlesson render command again to remake it (it makes only missing frames)"
           if first.what == "is missing" else
           "delete it and run the same ttlesson render command again to remake it")
    return f"{frames_dir(out_dir) / frame_filename(first.index)} {first.what}{others}; {fix}."


def require_frames(out_dir: Path, book: Manifest) -> None:
    """Raise ``FrameCheckError`` unless every recorded frame is on disk as it was recorded."""
    problems = check_frames(out_dir, book)
    if problems:
        raise FrameCheckError(frames_problem_sentence(out_dir, problems))


def _before_precision(item: dict) -> dict:
    """What a frame recorded before scheduler and precision were recorded was made with (ttlesson 0.1's rule)."""
    model, device = item.get("model", ""), str(item.get("device", ""))
    if item.get("backend") in ("tt", "tt-metal-demo"):
        precision = "tt-metal"
    elif device.startswith("cuda") and model != "tiny":
        precision = "bfloat16" if model == "sd35-large" else "float16"
    else:
        precision = "float32"
    return {"scheduler": "flow-match-euler" if model == "sd35-large" else "pndm", "precision": precision}


@dataclass(frozen=True)
class FrameOrigins(Presentable):
    out_dir: Path
    frames: dict[int, tuple[str, str]]  # index → (backend, device), for frames on disk as recorded
    frame_count: int
    damaged: tuple[int, ...] = ()  # recorded, but the PNG is gone or no longer has its recorded SHA-256
    problem: str | None = None  # one sentence about the first damaged frame and its fix

    @property
    def by_maker(self) -> dict[tuple[str, str], list[int]]:
        makers: dict[tuple[str, str], list[int]] = {}
        for index, maker in sorted(self.frames.items()):
            makers.setdefault(maker, []).append(index)
        return makers

    @property
    def not_on_tt(self) -> list[int]:
        return [index for index, (backend, device) in sorted(self.frames.items())
                if backend != "tt" and not is_tt_device(device)]

    @property
    def all_on_tt(self) -> bool:
        return bool(self.frames) and not self.not_on_tt

    def _frame_counts(self) -> list[str]:
        made = [f"{len(indices)} by {backend} on {device or 'an unrecorded device'} (frames {_ranges(indices)})"
                for (backend, device), indices in self.by_maker.items()]
        missing = self.frame_count - len(self.frames) - len(self.damaged)
        damaged = [f"{len(self.damaged)} recorded but missing or changed on disk "
                   f"(frames {_ranges(list(self.damaged))})"]
        return made + (damaged if self.damaged else []) + ([f"{missing} not made yet"] if missing > 0 else [])

    def verdict(self) -> str:
        if not self.frames:
            return "No frame has been made yet."
        if self.all_on_tt:
            return "Every frame was made on Tenstorrent hardware."
        if len(self.not_on_tt) == len(self.frames):
            return "No frame was made on Tenstorrent hardware."
        return f"{len(self.not_on_tt)} of {len(self.frames)} frames were not made on Tenstorrent hardware."

    def __str__(self) -> str:
        return "\n".join([f"{self.out_dir}: {len(self.frames)} of {self.frame_count} frames"]
                         + [f"  {line}" for line in self._frame_counts()] + [self.verdict()])

    def _repr_html_(self) -> str:
        items = "".join(f"<li>{html.escape(line)}</li>" for line in self._frame_counts())
        return (f"<p>{html.escape(str(self.out_dir))}: {len(self.frames)} of {self.frame_count} frames</p>"
                f"<ul>{items}</ul><p><b>{html.escape(self.verdict())}</b></p>")


def verify_frames(out_dir: str | os.PathLike, expect: str | None = None) -> FrameOrigins:
    """Which backend and device made each frame of a render folder, from its manifest (the lesson's Step 5).

    Only frames whose PNG is on disk with its recorded SHA-256 count; the others are listed as damaged, with
    ``problem`` saying which and how to remake them. With ``expect="tt"``, raises ``FrameVerificationError``
    unless every frame is intact and was made on Tenstorrent hardware.
    """
    if expect not in (None, "tt"):
        raise FrameVerificationError(f"expect={expect!r} is not understood; use expect='tt' (or leave it out).")
    folder = user_path(out_dir, "out_dir=")
    book = load(folder)
    if book is None:
        raise FrameVerificationError(f"{folder} has no {MANIFEST_NAME}, so nothing records who made its "
                                     "frames; give the folder you rendered into (ttlesson render --out).")
    problems = check_frames(folder, book)
    damaged = tuple(problem.index for problem in problems)
    origins = FrameOrigins(folder, {i: (record.backend, record.device) for i, record in book.frames.items()
                                    if i not in damaged}, book.frame_count, damaged,
                           frames_problem_sentence(folder, problems) if problems else None)
    if expect == "tt" and origins.problem:
        raise FrameVerificationError(origins.problem)
    if expect == "tt" and not origins.all_on_tt:
        raise FrameVerificationError(_not_on_tt_message(origins))
    return origins


def _not_on_tt_message(origins: FrameOrigins) -> str:
    if not origins.frames:
        return f"{origins.out_dir} has no frames yet; render them with {lever('backend', 'tt')} first."
    (backend, device), indices = next((maker, indices) for maker, indices in origins.by_maker.items()
                                      if indices[0] in origins.not_on_tt)
    return (f"{len(origins.not_on_tt)} of {len(origins.frames)} frames in {origins.out_dir} were not made on "
            f"Tenstorrent hardware (frames {_ranges(origins.not_on_tt)}; e.g. {backend} on {device or 'unknown'}); "
            "render them again with --backend tt --overwrite on a machine with a Tenstorrent device.")


def _ranges(indices: list[int]) -> str:
    """``[0, 1, 2, 5]`` → ``"0–2, 5"``."""
    runs: list[list[int]] = []
    for index in indices:
        if runs and index == runs[-1][-1] + 1:
            runs[-1].append(index)
        else:
            runs.append([index])
    return ", ".join(f"{run[0]}–{run[-1]}" if len(run) > 1 else str(run[0]) for run in runs)
