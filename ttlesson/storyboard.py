"""Storyboards: the list of prompts a video is made from, one frame per prompt.

Two file forms are read:

* JSON, the lesson's form: a list of objects, each ``{"prompt": "..."}`` with optional ``"seed"`` (an integer),
  ``"negative_prompt"`` (text) and ``"transition_frames"`` (in-between frames from this keyframe to the next,
  ``ttlesson.walk``). A bare string stands for ``{"prompt": string}``. The list may also be the ``"frames"`` of
  an object that sets the walk for every keyframe: ``{"transition_frames": 4, "easing": "ease-in-out",
  "frames": [...]}``.
* TXT: one prompt a line; blank lines and lines starting with ``#`` are ignored.

The extension says which (``.json``, ``.txt``); a file without one is JSON when it starts with ``[`` or ``{``,
else TXT; any other extension (``.yaml``, ``.csv``) is refused rather than misread. A built-in name
(``worlds-fair``) means the shipped storyboard unless a *file* of that name exists (a folder does not count).
Anything else is refused with one sentence that names the file, the line and what to change.
Frames are numbered from 0, as their files are (``frame_000.png`` is frame 0).
"""

from __future__ import annotations

import difflib
import json
import numbers
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import cast

from .errors import StoryboardError
from .fileio import read_user_file, write_atomic
from .inputs import shown, user_path
from .walk import EASINGS, MAX_TRANSITION_FRAMES

ALLOWED_KEYS = ("prompt", "seed", "negative_prompt", "transition_frames")
BOARD_KEYS = ("frames", "transition_frames", "easing")
MAX_SEED = 2**32 - 1
MAX_FRAMES = 100_000  # the manifest's bound too (ttlesson.manifest.MAX_FRAMES)
BUILTIN_PACKAGE = "ttlesson.storyboards"


@dataclass(frozen=True)
class Frame:
    """What one keyframe should show: its prompt, and optionally its own seed, negative prompt, and the number
    of in-between frames from it to the next keyframe (None: the storyboard's or the command's)."""

    prompt: str
    seed: int | None = None
    negative_prompt: str | None = None
    transition_frames: int | None = None


@dataclass
class Storyboard:
    frames: list[Frame]
    name: str = "storyboard"
    source: Path | None = field(default=None, compare=False)
    transition_frames: int | None = None  # in-betweens in every gap a keyframe does not set (None: 0)
    easing: str | None = None  # ttlesson.walk.EASINGS (None: linear)

    def __len__(self) -> int:
        return len(self.frames)

    def __iter__(self) -> Iterator[Frame]:
        return iter(self.frames)

    def __getitem__(self, index: int) -> Frame:
        return self.frames[index]

    @property
    def prompts(self) -> list[str]:
        return [frame.prompt for frame in self.frames]

    def seed_for(self, index: int, base_seed: int) -> int:
        """The frame's own seed when it has one, else ``base_seed + index``."""
        own = self.frames[index].seed
        return own if own is not None else (base_seed + index) % (MAX_SEED + 1)

    def transition_gaps(self, transition_frames: int | None = None) -> list[int]:
        """In-betweens after each keyframe but the last: the keyframe's own count, else ``transition_frames`` (the
        command's), else the storyboard's, else 0."""
        default = transition_frames if transition_frames is not None else (self.transition_frames or 0)
        return [frame.transition_frames if frame.transition_frames is not None else default
                for frame in self.frames[:-1]]

    def append(self, prompt: str, seed: int | None = None, negative_prompt: str | None = None,
               transition_frames: int | None = None) -> Frame:
        frame = _validated_frame({"prompt": prompt, "seed": seed, "negative_prompt": negative_prompt,
                                  "transition_frames": transition_frames}, where=f"new frame {len(self.frames)}")
        self.frames.append(frame)
        return frame

    def to_json(self) -> str:
        items = [{k: v for k, v in asdict(frame).items() if v is not None} for frame in self.frames]
        body = ",\n".join("  " + json.dumps(item, ensure_ascii=False) for item in items)
        listed = "[\n" + body + "\n]"
        settings = {k: v for k, v in (("transition_frames", self.transition_frames), ("easing", self.easing))
                    if v is not None}
        if not settings:
            return listed + "\n"
        head = "".join(f"{json.dumps(key)}: {json.dumps(value)}, " for key, value in settings.items())
        return "{" + head + '"frames": ' + listed + "}\n"

    def to_txt(self) -> str:
        return "".join(f"{frame.prompt}\n" for frame in self.frames)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the storyboard atomically (a reader never sees half a file): lesson-style JSON, or one prompt a
        line for a ``.txt`` path."""
        path = Path(path)
        if path.suffix.lower() == ".txt":
            if any(frame.seed is not None or frame.negative_prompt or frame.transition_frames is not None
                   for frame in self.frames) or self.transition_frames is not None or self.easing is not None:
                raise StoryboardError(f"{path}: a .txt storyboard holds prompts only; save it as .json to keep "
                                      "seeds, negative prompts and transitions.")
            path = write_atomic(path, self.to_txt())
        else:
            path = write_atomic(path, self.to_json())
        self.source = path
        return path


UPDATE_WAIT = 30.0  # seconds another kernel may hold the storyboard while it saves (a save takes milliseconds)


def update_file(path: str | os.PathLike, change: Callable[[Storyboard], object],
                start: Callable[[], Storyboard] | None = None) -> Storyboard:
    """Read the storyboard file, ``change`` it, and save it, as one step no other ttlesson process interleaves
    with: two kernels adding frames at once both keep their frame (a plain load, append and save would keep
    one). ``start`` makes the board when there is no file yet (default: an empty one). Returns the saved board."""
    from filelock import FileLock, Timeout

    path = user_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path.with_name(f".{path.name}.lock")), mode=0o666)
    try:
        with lock.acquire(timeout=UPDATE_WAIT):
            board = load(path) if path.exists() else (start() if start else Storyboard(frames=[], name=path.stem))
            change(board)
            board.save(path)
    except Timeout as err:
        raise StoryboardError(f"{path} is being saved by another process for over {UPDATE_WAIT:g} s; try again "
                              "when it is done.") from err
    return board


def builtin_names() -> list[str]:
    """Names of the storyboards shipped with ttlesson (``worlds-fair``: the lesson's ten prompts)."""
    return sorted(Path(entry.name).stem for entry in resources.files(BUILTIN_PACKAGE).iterdir()
                  if entry.name.endswith((".json", ".txt")))


def builtin_path(name: str) -> Path:
    for suffix in (".json", ".txt"):
        entry = resources.files(BUILTIN_PACKAGE) / f"{name}{suffix}"
        if entry.is_file():
            return Path(str(entry))
    raise StoryboardError(f"There is no built-in storyboard called {name!r}; "
                          f"choose one of: {', '.join(builtin_names())}.")


FORMATS = {".json": "json", ".txt": "txt"}
MAX_BYTES = 64 * 1024 ** 2  # far beyond any storyboard; a bigger file is not one
# One prompt a line: a line ends at \n, \r\n or \r only (str.splitlines also breaks at form feeds, NEL and
# U+2028/2029, which would split one prompt into several frames and shift every line number after it).
LINE_END = re.compile(r"\r\n|\r|\n")


def load(path_or_name: str | os.PathLike) -> Storyboard:
    """Load a storyboard from a .json or .txt file, or a built-in one by name (e.g. ``"worlds-fair"``)."""
    if not isinstance(path_or_name, (str, os.PathLike)) or not str(path_or_name).strip():
        raise StoryboardError(f"A storyboard is a file path or a built-in name ({', '.join(builtin_names())}), "
                              f"not {shown(path_or_name)}.")
    path = user_path(path_or_name)
    if not path.is_file() and str(path_or_name) in builtin_names():
        path = builtin_path(str(path_or_name))
    if not path.exists():
        raise StoryboardError(f"Storyboard file {str(path)!r} does not exist; check the path, or use a "
                              f"built-in storyboard ({', '.join(builtin_names())}).")
    if path.is_dir():
        raise StoryboardError(f"{str(path)!r} is a folder; give the storyboard's .json or .txt file.")
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None and path.suffix:
        raise StoryboardError(f"{path}: ttlesson reads storyboards as .json (the lesson's form) or .txt (one prompt "
                              f"a line), not {path.suffix}; save it in one of those forms.")
    raw = read_user_file(path, "Storyboard file", MAX_BYTES, StoryboardError)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise StoryboardError(f"{path}: byte {err.start} is not UTF-8 text; save the file as UTF-8.") from err
    text = text.replace("\r\n", "\n").replace("\r", "\n")  # as a text-mode read gives it: one kind of line end
    if fmt is None:  # no extension: the content says which
        fmt = "json" if text.lstrip()[:1] in ("[", "{") else "txt"
    board = loads(text, fmt=fmt, source=str(path))
    board.name = path.stem
    board.source = path
    return board


def loads(text: str, fmt: str = "json", source: str = "<storyboard>") -> Storyboard:
    """Parse storyboard text; ``fmt`` is ``"json"`` or ``"txt"``; ``source`` names it in error messages."""
    if not isinstance(text, str):
        raise StoryboardError(f"{source}: storyboard text must be a str, not {type(text).__name__}.")
    settings: dict = {}
    if fmt == "json":
        frames, settings = _frames_from_json(text, source)
    elif fmt == "txt":
        frames = _frames_from_txt(text, source)
    else:
        raise StoryboardError(f"{source}: unknown storyboard format {shown(fmt)}; use fmt='json' or fmt='txt'.")
    example = '[{"prompt": "..."}]' if fmt == "json" else "one prompt a line"
    return _whole_board(Storyboard(frames=frames, **settings), source, example)


def checked(board: object) -> Storyboard:
    """A ``Storyboard`` made in Python, checked as a file is (the same sentences for the same mistakes), so that
    what it renders can be read back: a copy with every frame validated."""
    if not isinstance(board, Storyboard):
        raise StoryboardError(f"A storyboard is a Storyboard, a file path or a built-in name, not {shown(board)}.")
    source = f"Storyboard {board.name!r}" if isinstance(board.name, str) else "The storyboard"
    if not isinstance(board.name, str) or not board.name.strip():
        raise StoryboardError(f"{source}'s name must be text (it names the video), not {shown(board.name)}.")
    if not isinstance(board.frames, (list, tuple)):
        raise StoryboardError(f"{source}'s frames must be a list of Frame(prompt=...), not {shown(board.frames)}.")
    frames = [_validated_frame(asdict(item) if isinstance(item, Frame) else item, where=f"{source}, frame {index}")
              for index, item in enumerate(board.frames)]
    easing = board.easing
    if easing is not None and easing not in EASINGS:
        raise StoryboardError(f"{source}: easing must be one of {', '.join(EASINGS)}, found {shown(easing)}.")
    copy = Storyboard(frames=frames, name=board.name, source=board.source, easing=easing,
                      transition_frames=_transition_frames(board.transition_frames, source))
    return _whole_board(copy, source, "Frame(prompt=...)")


def _whole_board(board: Storyboard, source: str, example: str) -> Storyboard:
    """The limits on a whole storyboard: at least one frame, and no more than one render makes."""
    if not board.frames:
        raise StoryboardError(f"{source} holds no frames; add at least one prompt ({example}).")
    if len(board.frames) > MAX_FRAMES:
        raise StoryboardError(f"{source} holds {len(board.frames)} frames, more than ttlesson makes in one render "
                              f"({MAX_FRAMES}); split it into several storyboards.")
    made = sum(board.transition_gaps()) + len(board.frames)
    if made > MAX_FRAMES:
        raise StoryboardError(f"{source}'s walk makes {made} frames, more than ttlesson makes in one render "
                              f"({MAX_FRAMES}); give fewer transition_frames.")
    return board


def long_prompts(board: Storyboard, count_tokens: Callable[[str], int], limit: int) -> list[tuple[int, int]]:
    """(frame index, token count) for each prompt or negative prompt longer than the encoder's ``limit``."""
    found = []
    for index, frame in enumerate(board.frames):
        longest = max(count_tokens(text) for text in (frame.prompt, frame.negative_prompt or ""))
        if longest > limit:
            found.append((index, longest))
    return found


def _frames_from_txt(text: str, source: str) -> list[Frame]:
    frames = []
    for number, line in enumerate(LINE_END.split(text), start=1):
        prompt = line.strip()
        if prompt and not prompt.startswith("#"):
            if "\x00" in prompt:
                raise StoryboardError(f"{source}, line {number}: the prompt holds a NUL character; save the file as "
                                      "plain text.")
            frames.append(Frame(prompt=prompt))
    return frames


def _frames_from_json(text: str, source: str) -> tuple[list[Frame], dict]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise StoryboardError(f"{source}, line {err.lineno}, column {err.colno}: invalid JSON ({err.msg}); "
                              'a storyboard looks like [{"prompt": "..."}, ...].') from err
    except RecursionError as err:
        raise StoryboardError(f"{source}: the JSON is nested too deeply to be a storyboard; "
                              'a storyboard looks like [{"prompt": "..."}, ...].') from err
    except ValueError as err:  # a number too long for Python to convert (over 4,300 digits)
        raise StoryboardError(f"{source}: the JSON holds a number too long to read ({str(err).split(':')[0]}); "
                              "seeds are whole numbers from 0 to 4294967295.") from err
    settings: dict = {}
    start = text.index("[") + 1 if isinstance(data, list) else None
    if isinstance(data, dict) and "frames" in data:
        settings = _board_settings(data, source)
        start = _frames_list_start(text)
        data = data["frames"]
    if not isinstance(data, list):
        raise StoryboardError(f'{source}: expected a JSON list of {{"prompt": ...}} objects, '
                              f'found {_kind(data)}; wrap the frames in [ ] (or in {{"frames": [ ]}}).')
    assert start is not None  # data is a list, at the top or under "frames"
    lines = _element_lines(text, start)
    return [_validated_frame(item, where=f"{source}, line {line} (frame {index})")
            for index, (item, line) in enumerate(zip(data, lines))], settings


def _board_settings(data: dict, source: str) -> dict:
    """The walk settings of a storyboard object ``{"transition_frames": K, "easing": …, "frames": [...]}``."""
    for key in data:
        if key not in BOARD_KEYS:
            close = difflib.get_close_matches(key, BOARD_KEYS + ALLOWED_KEYS, n=1)
            hint = f'did you mean "{close[0]}"? ' if close else ""
            raise StoryboardError(f"{source}: unknown storyboard key {json.dumps(key[:40], ensure_ascii=False)}; "
                                  f"{hint}a storyboard object holds {', '.join(BOARD_KEYS)}.")
    if not isinstance(data["frames"], list):
        raise StoryboardError(f'{source}: "frames" must be a list of {{"prompt": ...}} objects, found '
                              f"{_kind(data['frames'])}; wrap the frames in [ ].")
    settings = {"transition_frames": _transition_frames(data.get("transition_frames"), source)}
    easing = data.get("easing")
    if easing is not None and easing not in EASINGS:
        raise StoryboardError(f'{source}: "easing" must be one of {", ".join(EASINGS)}, found {shown(easing)}.')
    settings["easing"] = easing
    return settings


def _transition_frames(value: object, where: str) -> int | None:
    if value is None:
        return None
    if (isinstance(value, bool) or not isinstance(value, numbers.Integral)
            or not 0 <= cast(int, value) <= MAX_TRANSITION_FRAMES):  # an Integral compares as an int
        raise StoryboardError(f'{where}: "transition_frames" must be a whole number from 0 to '
                              f"{MAX_TRANSITION_FRAMES}, found {shown(value)}.")
    return int(value)


def _frames_list_start(text: str) -> int:
    """Position just inside the ``"frames"`` list of a storyboard object that ``json.loads`` already accepted."""
    decoder = json.JSONDecoder()
    pos = text.index("{") + 1
    while True:
        while text[pos] in " \t\r\n,":
            pos += 1
        key, pos = decoder.raw_decode(text, pos)
        while text[pos] in " \t\r\n:":
            pos += 1
        if key == "frames":  # the last "frames" wins, as in json.loads
            start = pos + 1
        _, pos = decoder.raw_decode(text, pos)
        while text[pos] in " \t\r\n":
            pos += 1
        if text[pos] == "}":
            return start


def _validated_frame(item: object, where: str) -> Frame:
    if isinstance(item, str):
        item = {"prompt": item}
    if not isinstance(item, dict):
        raise StoryboardError(f'{where}: expected an object like {{"prompt": "..."}}, found {_kind(item)}.')
    for key in item:
        if key not in ALLOWED_KEYS:
            close = difflib.get_close_matches(key, ALLOWED_KEYS, n=1)
            hint = f'did you mean "{close[0]}"? ' if close else ""
            shown_key = json.dumps(key[:40], ensure_ascii=False)  # quoted, and a line break stays "\n"
            raise StoryboardError(f"{where}: unknown key {shown_key}; {hint}allowed keys are "
                                  f"{', '.join(ALLOWED_KEYS)}.")
    if "prompt" not in item:
        raise StoryboardError(f'{where}: no "prompt"; every frame needs {{"prompt": "..."}}.')
    prompt = item["prompt"]
    if not isinstance(prompt, str):
        raise StoryboardError(f'{where}: "prompt" must be text in quotes, found {_kind(prompt)}.')
    if not prompt.strip():
        raise StoryboardError(f'{where}: "prompt" is empty; write what this frame should show.')
    seed = item.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)
                             or not 0 <= cast(int, seed) <= MAX_SEED):  # an Integral compares as an int
        raise StoryboardError(f'{where}: "seed" must be a whole number from 0 to {MAX_SEED}, found {shown(seed)}.')
    seed = None if seed is None else int(seed)
    negative = item.get("negative_prompt")
    if negative is not None and not isinstance(negative, str):
        raise StoryboardError(f'{where}: "negative_prompt" must be text in quotes, found {_kind(negative)}.')
    return Frame(prompt=prompt.strip(), seed=seed, negative_prompt=(negative or "").strip() or None,
                 transition_frames=_transition_frames(item.get("transition_frames"), where))


def _element_lines(text: str, start: int) -> list[int]:
    """1-based line of each element of a JSON list (starting just after ``start``'s ``[``) that ``json.loads``
    already accepted."""
    decoder = json.JSONDecoder()
    lines: list[int] = []
    pos = start
    line, counted = 1, 0
    while True:
        while text[pos] in " \t\r\n,":
            pos += 1
        if text[pos] == "]":
            return lines
        line += text.count("\n", counted, pos)
        counted = pos
        lines.append(line)
        _, pos = decoder.raw_decode(text, pos)


def _kind(value: object) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "true/false", type(None): "null",
             int: "a number", float: "a number"}
    return names.get(type(value), type(value).__name__)
