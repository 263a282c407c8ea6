"""The render folder's layout and its ``manifest.json``: what made each frame, so runs resume and can be verified.

A render folder holds ``frames/frame_000.png, frame_001.png, …`` and ``manifest.json``. The manifest records,
per frame, the settings that determine its pixels (prompt, negative prompt, seed, steps, guidance, size,
model, backend, scheduler, precision), the device that really ran it, how long it took and the PNG's SHA-256.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from .errors import TTLessonError
from .fileio import write_atomic

MANIFEST_NAME = "manifest.json"
FRAMES_DIR = "frames"
SCHEMA = 1

# The fields of a record that decide what the frame looks like: a frame is reused only when all of them match.
IDENTITY_FIELDS = ("prompt", "negative_prompt", "seed", "steps", "guidance", "width", "height", "model", "backend",
                   "scheduler", "precision")


def frame_filename(index: int) -> str:
    return f"frame_{index:03d}.png"


def frame_indices(folder: Path) -> list[int]:
    """Indices of the ``frame_NNN.png`` files in ``folder``, sorted."""
    found = (path.stem.removeprefix("frame_") for path in Path(folder).glob("frame_*.png"))
    return sorted(int(number) for number in found if number.isdigit())


def frames_dir(out_dir: Path) -> Path:
    return Path(out_dir) / FRAMES_DIR


def manifest_path(out_dir: Path) -> Path:
    return Path(out_dir) / MANIFEST_NAME


@dataclass(frozen=True)
class FrameRecord:
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
    scheduler: str = "pndm"  # ttlesson.schedulers
    precision: str = "float32"  # ttlesson.accel: the numerics, e.g. float32, bfloat16, openvino-bf16, tt-metal
    device: str = ""
    seconds: float = 0.0
    warmup: bool = False  # first frame of its run: its seconds include compilation and cache warm-up
    sha256: str = ""

    @property
    def file(self) -> str:
        return f"{FRAMES_DIR}/{frame_filename(self.index)}"

    def identity(self) -> dict:
        return {name: getattr(self, name) for name in IDENTITY_FIELDS}

    def differences(self, other: "FrameRecord") -> list[str]:
        """Human-readable ``name: old → new`` for each identity field that differs."""
        return [f"{name} {getattr(self, name)!r} → {getattr(other, name)!r}" for name in IDENTITY_FIELDS
                if getattr(self, name) != getattr(other, name)]


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


def load(out_dir: Path) -> Manifest | None:
    """The folder's manifest, or ``None`` when it has none yet."""
    path = manifest_path(out_dir)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        known = {f.name for f in fields(FrameRecord)}
        records = [FrameRecord(**{**_before_precision(item), **{k: v for k, v in item.items() if k in known}})
                   for item in data["frames"]]
        return Manifest(storyboard=data.get("storyboard", ""), frame_count=int(data["frame_count"]),
                        frames={record.index: record for record in records}, version=data.get("ttlesson", ""))
    except (ValueError, KeyError, TypeError) as err:
        raise TTLessonError(f"{path} is not a manifest ttlesson can read ({type(err).__name__}: {err}); "
                            "move it away and render again, or choose another output folder.") from None


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
