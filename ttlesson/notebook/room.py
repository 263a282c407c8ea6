"""A workshop's room file: the instructor's settings for every attendee's notebooks, set once.

``TTLESSON_ROOM`` names a JSON file the kernels read (an attendee's own ``TTLESSON_*`` variables still win)::

    {
      "model": "sd14", "steps": 20, "size": 512, "backend": "auto",
      "server": "http://tt-host:8470",
      "workdir": "~/workshop/{user}",
      "film": {"keyframes": 2, "transition_frames": 2},
      "instructor_only": ["scaling", "sd35"]
    }

Every key is optional. ``workdir`` may hold ``{user}`` (the Unix user), so one file gives each attendee a folder
of their own. ``film`` shrinks step 6's three film versions. ``instructor_only`` names the heavy cells that
attendees see as the instructor's demo instead of running them (``scaling``: step 8's measurement, which opens
every device; ``sd35``: step 10's SD 3.5 Large frames, a 27 GB download and a whole T3K); the instructor, with
``TTLESSON_INSTRUCTOR=1``, runs them.
"""

from __future__ import annotations

import getpass
import html
import json
import os
from dataclasses import dataclass
from pathlib import Path

from .. import env
from ..errors import TTLessonError
from ..fileio import read_user_file
from ..inputs import shown, user_path

ROOM = env.ROOM
INSTRUCTOR = "TTLESSON_INSTRUCTOR"
SETTING_KEYS = ("model", "backend", "workdir", "steps", "size", "server")
HEAVY_CELLS = {"scaling": "step 8's scaling measurement", "sd35": "step 10's SD 3.5 Large frames"}
MAX_ROOM_BYTES = 64 * 1024
MAX_FILM_KEYFRAMES, MAX_FILM_TRANSITIONS = 3, 24  # step 6 walks the 3 keyframes of lesson.WALK at most


@dataclass(frozen=True)
class Room:
    path: Path
    settings: dict  # a subset of SETTING_KEYS → the value as text (what the environment variable would hold)
    film_keyframes: int = 3
    film_transition_frames: int = 4
    instructor_only: tuple[str, ...] = ()

    @property
    def source(self) -> str:
        return f"room file ({self.path})"

    def runs(self, cell: str) -> bool:
        """Whether this kernel runs the heavy ``cell`` (``HEAVY_CELLS``), or shows it as the instructor's demo."""
        return cell not in self.instructor_only or env.flag(INSTRUCTOR)


def current() -> Room | None:
    """The room file named by ``TTLESSON_ROOM``, checked; None when it is not set."""
    value = os.environ.get(ROOM, "").strip()
    return load(value) if value else None


def load(path: str | os.PathLike) -> Room:
    path = user_path(path, ROOM)
    raw = read_user_file(path, f"{ROOM} file", MAX_ROOM_BYTES)
    try:
        data = json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as err:
        raise TTLessonError(f"{ROOM} file {path}: byte {err.start} is not UTF-8 text; save it as UTF-8.") from err
    except (json.JSONDecodeError, RecursionError, ValueError) as err:
        where = f", line {err.lineno}" if isinstance(err, json.JSONDecodeError) else ""
        raise TTLessonError(f"{ROOM} file {path}{where}: not JSON ({str(err).split(':')[0]}); a room file looks "
                            'like {"model": "sd14", "steps": 20}.') from err
    return parse(data, path)


def parse(data: object, path: Path) -> Room:
    """A room from the file's JSON, or one sentence naming the key and what it takes."""
    where = f"{ROOM} file {path}"
    if not isinstance(data, dict):
        raise TTLessonError(f'{where} holds {_kind(data)}; a room file is a JSON object like {{"model": "sd14"}}.')
    known = (*SETTING_KEYS, "film", "instructor_only")
    for key in data:
        if key not in known:
            raise TTLessonError(f"{where}: unknown key {json.dumps(str(key)[:40])}; a room file holds "
                                f"{', '.join(known)}.")
    settings = {}
    for key in SETTING_KEYS:
        value = data.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
            raise TTLessonError(f'{where}: "{key}" must be text or a whole number, not {shown(value)}.')
        settings[key] = str(value).strip()
    if "workdir" in settings:
        settings["workdir"] = settings["workdir"].replace("{user}", getpass.getuser())
    film = data.get("film") or {}
    if not isinstance(film, dict) or set(film) - {"keyframes", "transition_frames"}:
        raise TTLessonError(f'{where}: "film" must be an object with "keyframes" and "transition_frames", not '
                            f"{shown(film)}.")
    keyframes = _whole(film.get("keyframes", 3), f'{where}: "film.keyframes"', 1, MAX_FILM_KEYFRAMES)
    transitions = _whole(film.get("transition_frames", 4), f'{where}: "film.transition_frames"', 0,
                         MAX_FILM_TRANSITIONS)
    heavy = data.get("instructor_only") or []
    if not isinstance(heavy, list) or any(not isinstance(cell, str) or cell not in HEAVY_CELLS for cell in heavy):
        raise TTLessonError(f'{where}: "instructor_only" must be a list of {", ".join(HEAVY_CELLS)}, not '
                            f"{shown(heavy)}.")
    return Room(path, settings, keyframes, transitions, tuple(dict.fromkeys(heavy)))


def _whole(value: object, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise TTLessonError(f"{name} must be a whole number from {low} to {high}, not {shown(value)}.")
    return value


def _kind(value: object) -> str:
    return {list: "a list", str: "a string", int: "a number", float: "a number", bool: "true/false",
            type(None): "null"}.get(type(value), type(value).__name__)


@dataclass(frozen=True)
class InstructorDemo:
    """What an attendee's notebook shows in place of a heavy cell the room file leaves to the instructor."""

    cell: str

    @property
    def verdict(self) -> str:
        return (f"In this room, {HEAVY_CELLS[self.cell]} is the instructor's demo (TTLESSON_ROOM's "
                f"instructor_only), so it is not run here; the instructor runs it with {INSTRUCTOR}=1.")

    def __str__(self) -> str:
        return self.verdict

    def _repr_html_(self) -> str:
        return f"<p><i>{html.escape(self.verdict)}</i></p>"
