"""Tenstorrent boards: what each board type is (architecture, chips, chips on PCIe), how sources name them, how
chips group into cards, and the ``MESH_DEVICE`` name tt-metal's demos use for a set of cards."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from ..presenting import Presentable
from .arch import Arch


@dataclass(frozen=True)
class BoardKind:
    family: str  # n150, n300, p100, p150, p300, galaxy
    arch: Arch
    chips: int  # chips on one card
    pcie_chips: int  # of those, how many the kernel driver lists (the rest are reached over ethernet)


_N150 = BoardKind("n150", Arch.WORMHOLE, 1, 1)
_N300 = BoardKind("n300", Arch.WORMHOLE, 2, 1)
_P100 = BoardKind("p100", Arch.BLACKHOLE, 1, 1)
_P150 = BoardKind("p150", Arch.BLACKHOLE, 1, 1)
_P300 = BoardKind("p300", Arch.BLACKHOLE, 2, 2)

# Keyed by the names the kernel driver writes to tt_card_type; mock descriptors and ttnn use the bare family.
BOARD_KINDS: dict[str, BoardKind] = {
    "n150": _N150, "n300": _N300,
    "galaxy-wormhole": BoardKind("galaxy", Arch.WORMHOLE, 32, 32),
    "p100": _P100, "p100a": _P100,
    "p150": _P150, "p150a": _P150, "p150b": _P150, "p150c": _P150,
    "p300": _P300, "p300a": _P300, "p300b": _P300, "p300c": _P300,
    "galaxy-blackhole": BoardKind("galaxy", Arch.BLACKHOLE, 32, 32),
}
# Other spellings of the same boards: tt-smi's names, and generic ones.
_BOARD_ALIASES = {
    "tt-galaxy-wh": "galaxy-wormhole", "wh_4u": "galaxy-wormhole", "galaxy": "galaxy-wormhole",
    "tt-galaxy-bh": "galaxy-blackhole", "bh-scrappy": "p100",
}

# MESH_DEVICE names that tt-metal's demos understand, by (family, number of cards).
_MESH_NAMES = {
    ("n150", 1): "N150", ("n150", 4): "N150x4", ("n300", 1): "N300", ("n300", 4): "T3K",
    ("p100", 1): "P100", ("p150", 1): "P150", ("p150", 4): "P150x4", ("p150", 8): "P150x8", ("p300", 1): "P300",
    ("p300", 2): "P300x2",
}
_GALAXY_MESH_NAMES: dict[str, str] = {Arch.WORMHOLE: "TG", Arch.BLACKHOLE: "BHGLX"}

# ttnn's ClusterType names → the board a cluster of that type is made of.
CLUSTER_TYPE_BOARDS = {
    "N150": "n150", "N300": "n300", "N300_2x2": "n300", "T3K": "n300", "GALAXY": "galaxy-wormhole",
    "TG": "galaxy-wormhole", "P100": "p100", "P150": "p150", "P150_X2": "p150", "P150_X4": "p150",
    "P150_X8": "p150", "P300": "p300", "P300_X2": "p300", "BLACKHOLE_GALAXY": "galaxy-blackhole",
}


def normalise_board(text: str) -> str:
    """A board name as the kernel driver writes it: ``"n300 L"`` → ``n300``, ``tt-galaxy-wh`` → ``galaxy-wormhole``."""
    name = text.strip().lower()
    name = re.sub(r"\s+[lr]$", "", name)  # tt-smi's local/remote chip suffix on Wormhole
    return _BOARD_ALIASES.get(name, name)


@dataclass(frozen=True)
class Card(Presentable):
    board: str  # normalised board name (n300, p150a, p300c, galaxy-wormhole…), or what the source said
    arch: Arch | Literal["unknown"]
    chips: int
    source: str  # kernel driver, tt-smi or ttnn
    seen_as: str = ""  # device nodes, bus ids or board id, for telling cards apart

    @property
    def family(self) -> str:
        kind = BOARD_KINDS.get(self.board)
        return kind.family if kind else self.board

    def __str__(self) -> str:
        chips = f"{self.chips} chip{'s' if self.chips != 1 else ''}"
        where = f", {self.seen_as}" if self.seen_as else ""
        return f"{self.board} ({chips}, {self.arch}{where})"


@dataclass(frozen=True)
class ListedChip:
    """One chip as a source listed it, before chips are grouped into cards."""

    board: str
    board_id: str | None  # chips of one card share it, when the source gives it
    seen_as: str


def group_into_cards(chips: list[ListedChip], source: str, per_card: Callable[[BoardKind], int]) -> list[Card]:
    """Cards from chips: by shared board id where every chip has one, else in runs of ``per_card(kind)`` chips.

    A galaxy's chips make one card. Boards this table does not know become one card per chip.
    """
    cards: list[Card] = []
    for board in dict.fromkeys(chip.board for chip in chips):
        mine = [chip for chip in chips if chip.board == board]
        kind = BOARD_KINDS.get(board)
        if kind is None:
            cards += [Card(board, "unknown", 1, source, chip.seen_as) for chip in mine]
        elif kind.family == "galaxy":
            cards.append(Card(board, kind.arch, len(mine), source, f"{len(mine)} chips listed"))
        else:
            cards += [Card(board, kind.arch, kind.chips, source, _seen_as(group))
                      for group in _card_groups(mine, per_card(kind))]
    return cards


def _card_groups(chips: list[ListedChip], size: int) -> list[list[ListedChip]]:
    if all(chip.board_id for chip in chips):
        by_id: dict[str | None, list[ListedChip]] = {}
        for chip in chips:
            by_id.setdefault(chip.board_id, []).append(chip)
        return list(by_id.values())
    return [chips[start:start + size] for start in range(0, len(chips), size)]


def _seen_as(group: list[ListedChip]) -> str:
    return ", ".join(chip.seen_as for chip in group if chip.seen_as)


def mesh_device_for(cards: list[Card]) -> tuple[str | None, str]:
    """(MESH_DEVICE name tt-metal's demos use for these cards, or None; a few words on why)."""
    if not cards:
        return None, "no Tenstorrent card"
    families = sorted({card.family for card in cards})
    if len(families) > 1:
        return None, f"mixed boards ({', '.join(families)}): choose the cards to use with TT_VISIBLE_DEVICES"
    family, count = families[0], len(cards)
    name = _GALAXY_MESH_NAMES.get(cards[0].arch) if family == "galaxy" else _MESH_NAMES.get((family, count))
    if name:
        return name, f"{count} {family} card{'s' if count != 1 else ''}"
    return None, (f"tt-metal's demos have no MESH_DEVICE preset for {count} {family} cards; "
                  f"use one card ({_MESH_NAMES.get((family, 1), family.upper())}) with TT_VISIBLE_DEVICES")


def card_kinds() -> list[BoardKind]:
    """One ``BoardKind`` per card in the board table (N150, N300, P100, P150, P300), in its order; a Galaxy is a
    system of 32 chips, not a card."""
    return [kind for kind in dict.fromkeys(BOARD_KINDS.values()) if kind.family != "galaxy"]


_NUMBERS = {2: "two"}


def sd14_cards_sentence() -> str:
    """The cards tt-metal's SD 1.4 demo runs on, from the board table: "SD 1.4 runs on one chip of every Tenstorrent
    card: the N150, P100 and P150 have one chip each; the N300 and P300 have two, and the demo uses one of them"."""
    by_chips: dict[int, list[str]] = {}
    for kind in card_kinds():
        by_chips.setdefault(kind.chips, []).append(kind.family.upper())
    single = f"the {_and(by_chips.pop(1))} have one chip each"
    several = [f"the {_and(names)} have {_NUMBERS.get(chips, chips)}, and the demo uses one of them"
               for chips, names in sorted(by_chips.items())]
    return f"SD 1.4 runs on one chip of every Tenstorrent card: {'; '.join([single, *several])}."


def _and(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def is_tt_device(device: str) -> bool:
    """Whether a backend's ``device`` text names Tenstorrent hardware (``tt:0 (wormhole_b0)``, ``Tenstorrent …``)."""
    return device.lower().startswith(("tt", "tenstorrent"))


def device_notice(device: str | None) -> str | None:
    """The sentence a render shows when its frames are not being made on Tenstorrent hardware, else None.

    ``device`` is a backend's ``device`` text (``cpu``, ``cuda:0 (NVIDIA H100)``).
    """
    if not device or is_tt_device(device):
        return None
    where = "the CPU" if device.startswith("cpu") else device
    return f"Frames are being made on {where}, not Tenstorrent hardware."
