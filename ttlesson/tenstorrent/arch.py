"""Tenstorrent chip architectures, each with both of its spellings."""

from __future__ import annotations

import sys
from enum import Enum

if sys.version_info >= (3, 11):
    from enum import StrEnum
else:
    class StrEnum(str, Enum):
        """enum.StrEnum, new in Python 3.11: a member is its value, in str() and format() too (Python 3.10's
        Enum.__format__ formats str(member) once __str__ is overridden)."""

        __str__ = str.__str__


class Arch(StrEnum):
    """A chip architecture. Its value (and so its text in reports and JSON) is the name people, board names and
    tt-smi use; ``metal_name`` is tt-metal's (``TT_METAL_ARCH_NAME``, ``ttnn.get_arch_name()``)."""

    WORMHOLE = "wormhole", "wormhole_b0"
    BLACKHOLE = "blackhole", "blackhole"

    metal_name: str

    def __new__(cls, value: str, metal_name: str):
        member = str.__new__(cls, value)
        member._value_ = value
        member.metal_name = metal_name
        return member

    @classmethod
    def parse(cls, text: str | None) -> Arch | None:
        """The architecture ``text`` names in either spelling, in any case; None for anything else."""
        word = (text or "").strip().lower()
        return next((arch for arch in cls if word in (arch.value, arch.metal_name)), None)
