"""The numbers and sizes people give ttlesson, checked once: whole numbers, real numbers and frame sizes.

Python callers may pass numpy scalars (``np.int64(4)``, ``np.float32(7.5)``): anything that is a whole number or
a real number to Python's ``numbers`` module is accepted. A wrong type or a value out of range is a
``TTLessonError`` whose one sentence names the parameter, the value and what to give instead.
"""

from __future__ import annotations

import math
import numbers
import os
from pathlib import Path

from .errors import TTLessonError

MOST_DEVICES = 1024  # devices= / --devices; the real count (GPUs, chips) is checked when the backend opens
MAX_SIDE = 8192  # no Stable Diffusion checkpoint is trained anywhere near this; a bound keeps size sums small


def user_path(path: str | os.PathLike, what: str = "A path") -> Path:
    """A path as the user typed it, ``~`` expanded; ``~nosuchuser/x`` stays as typed instead of raising.
    Anything but text or a path (``what`` names it) is one sentence, not a TypeError."""
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise TTLessonError(f"{what} must be a file or folder path (text or a Path), not {shown(path)}.")
    return Path(os.path.expanduser(os.fspath(path)))


def shown(value: object) -> str:
    """``repr(value)``, kept short: a 5,000-digit number becomes "a 5000-digit number", long text is cut."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        digits = _digits(int(value))
        if digits > 20:
            return f"a {digits}-digit number"
    text = repr(value) if not isinstance(value, str) else repr(value[:60] + ("…" if len(value) > 60 else ""))
    return text if len(text) <= 80 else text[:77] + "…"


def _digits(value: int) -> int:
    """Decimal digits of ``value`` without converting it to text (Python 3.11+ refuses over 4,300 digits)."""
    value = abs(value)
    if value < 10:
        return 1
    estimate = int(value.bit_length() * math.log10(2)) + 1
    return estimate if value >= 10 ** (estimate - 1) else estimate - 1


def whole_number(value: object, name: str, low: int, high: int, hint: str = "",
                 error: type[TTLessonError] = TTLessonError) -> int:
    """``value`` as an ``int`` within [low, high]; numpy integers count, bools and floats do not.

    ``name`` is how the message names the value: ``--crf`` or ``Steps``; a wrong *type* can only come from
    Python, so that message names the keyword argument (``crf=``). ``error`` is the exception class raised.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise error(f"{_keyword(name)} must be a whole number from {low} to {high}, not {shown(value)}"
                            f"{_type_note(value)}{hint}.")
    number = int(value)
    if not low <= number <= high:
        raise error(f"{name} {shown(number)} is out of range; give a whole number from {low} to {high}{hint}.")
    return number


def real_number(value: object, name: str, low: float, high: float, hint: str = "",
                error: type[TTLessonError] = TTLessonError) -> float:
    """``value`` as a finite ``float`` within [low, high]; numpy floats and integers count, bools do not."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise error(f"{_keyword(name)} must be a number from {low:g} to {high:g}, not {shown(value)}"
                            f"{_type_note(value)}{hint}.")
    number = float(value) if not isinstance(value, numbers.Integral) or _digits(int(value)) < 300 else math.inf
    if not (math.isfinite(number) and low <= number <= high):
        raise error(f"{name} {_short_float(value)} is out of range; give a number from {low:g} to {high:g}"
                            f"{hint}.")
    return number


def yes_or_no(value: object, name: str, error: type[TTLessonError] = TTLessonError) -> bool:
    """``value`` as a ``bool``: True or False only (``"no"`` is a true value in Python, and would replace frames)."""
    if not isinstance(value, bool):
        raise error(f"{_keyword(name)} must be True or False, not {shown(value)}{_type_note(value)}.")
    return value


def _keyword(name: str) -> str:
    """``--crf`` or ``Steps`` → ``crf=`` / ``steps=``: the Python keyword argument a wrong type came through."""
    return name.lstrip("-").replace("-", "_").lower() + "="


def _short_float(value) -> str:
    if isinstance(value, numbers.Integral):
        return shown(value)
    return f"{float(value):g}"  # as typed: 0, 0.01, 7.5


def _type_note(value: object) -> str:
    return f" (a {type(value).__name__})" if isinstance(value, (str, bytes, list, tuple, dict, set)) else ""


def parse_size(size: object) -> tuple[int, int]:
    """``512``, ``"512"``, ``"768x512"`` or ``(768, 512)`` → (width, height), multiples of 8 from 64 to 8192."""
    try:
        if isinstance(size, (tuple, list)):
            width, height = size
        elif isinstance(size, numbers.Integral) and not isinstance(size, bool):
            width = height = size
        elif isinstance(size, str) and size.strip().isascii() and size.strip().isdigit():
            width = height = int(size.strip())
        elif isinstance(size, str) and size.isascii():
            width, height = (int(part) if part.strip().isdigit() else _not_a_size() for part in
                             size.lower().split("x"))
        else:
            raise ValueError
        if any(isinstance(v, bool) or not isinstance(v, numbers.Integral) for v in (width, height)):
            raise ValueError
    except (ValueError, TypeError) as err:
        raise TTLessonError(f"Size {shown(size)} is not understood; give one number (512) or width x height "
                            "(768x512).") from err
    width, height = int(width), int(height)
    for value in (width, height):
        if value < 64 or value % 8 or value > MAX_SIDE:
            nearest = min(MAX_SIDE, max(64, round(value / 8) * 8)) if _digits(value) < 10 else MAX_SIDE
            raise TTLessonError(f"Size {shown(value)} does not work: Stable Diffusion needs multiples of 8 from 64 "
                                f"to {MAX_SIDE} (try {nearest}).")
    return width, height


def _not_a_size() -> int:
    raise ValueError
