"""Write the mock cluster descriptors in tests/data/clusters/ for the multi-chip systems built from a grid.

ttnn reads a cluster descriptor (UMD's YAML format) from ``TT_METAL_MOCK_CLUSTER_DESC_PATH`` and then answers
topology questions as if those chips were there. What it reports (the cluster type, the system mesh shape)
depends on the ethernet links, so each system below is described as a grid of chips with its links:

* every chip is linked to its neighbours along rows and columns (``wrap`` adds the ring/torus links);
* ``links`` ethernet channels per neighbour, each chip numbering its channels in the order its links are
  listed (a Blackhole chip has 12 usable channels after the two that are always harvested);
* Galaxy chips sit in trays of 8: UMD reads the tray from the upper bits of the chip's PCIe bus id and tt-metal
  wants every (tray, ASIC location) pair to name one chip, with chip 0 at tray 1, location 1;
* which chips sit on PCIe (``mmio``), the board type and a board id whose upper bits name that board type
  (UMD reads the board type from bits 36 and up, so a made-up id must keep them).

Run ``python tools/make_mock_clusters.py`` after changing a system here; the tests read the YAML files.
The one- and two-chip descriptors (n150, n300, p150, p300) and t3k.yaml are written by hand.
tt-umd's tests/cluster_descriptor_examples and the mesh graph descriptors inside the ttnn wheel
(ttnn/tt_metal/fabric/mesh_graph_descriptors/) were read to learn the format and the shapes; nothing is copied.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "clusters"

# UMD's board-type codes (board id bits 36+) for the boards below.
BOARD_CODES = {"p150": 0x40, "p300": 0x44, "ubb": 0x35, "ubb_blackhole": 0x47}
# Harvesting per board type as UMD expects it (a p150 has two Tensix columns off, a Galaxy chip none or one);
# a p300's two chips differ: the left one (ASIC location 0) and the right one (1) use different PCIe blocks.
_BH = "noc_translation: true, dram_harvesting_mask: 0, eth_harvesting_mask: 288"
HARVESTING = {
    "ubb": ["{noc_translation: true, harvest_mask: 0, dram_harvesting_mask: 0, eth_harvesting_mask: 0, "
            "pcie_harvesting_mask: 0}"],
    "p150": [f"{{{_BH}, harvest_mask: 8320, pcie_harvesting_mask: 2}}"],
    "p300": [f"{{{_BH}, harvest_mask: 8320, pcie_harvesting_mask: 2}}",
             f"{{{_BH}, harvest_mask: 272, pcie_harvesting_mask: 1}}"],
    "ubb_blackhole": [f"{{{_BH}, harvest_mask: 128, pcie_harvesting_mask: 1}}"],
}
# The upper bits of a PCIe bus id that UMD maps to Galaxy trays 1-4, per architecture.
TRAY_BUS_BITS = {"wormhole_b0": (0xC0, 0x80, 0x00, 0x40), "blackhole": (0x00, 0x40, 0xC0, 0x80)}
CHIPS_PER_TRAY = 8


@dataclass(frozen=True)
class GridSystem:
    file: str
    title: str  # the comment at the top of the file
    arch: str
    board_type: str
    rows: int
    cols: int
    links: int  # ethernet channels between two neighbouring chips
    chips_per_board: int  # 32 for a Galaxy (one board), 2 for p300 cards, 1 for p150 cards
    wrap: bool = False  # link the ends of each row and column (a ring of 2×2 is the same graph without it)

    @property
    def galaxy(self) -> bool:
        return self.chips_per_board == self.chips == 32

    @property
    def chips(self) -> int:
        return self.rows * self.cols

    def chip(self, row: int, col: int) -> int:
        if self.galaxy:
            return galaxy_chip(row, col)
        return row * self.cols + col

    def neighbour_pairs(self) -> list[tuple[int, int]]:
        """(chip, neighbour) for every pair of linked chips, each pair once."""
        pairs = []
        for row in range(self.rows):
            for col in range(self.cols):
                if col + 1 < self.cols or (self.wrap and self.cols > 2):
                    pairs.append((self.chip(row, col), self.chip(row, (col + 1) % self.cols)))
                if row + 1 < self.rows or (self.wrap and self.rows > 2):
                    pairs.append((self.chip(row, col), self.chip((row + 1) % self.rows, col)))
        return pairs


# A Galaxy's 32 chips as they are wired: a 4x8 grid of four trays, each tray a 2x4 block of ASIC locations 1-8.
# Tray 2 is the top-left block, tray 4 top-right, tray 1 bottom-left, tray 3 bottom-right; within a tray the
# locations run in rows of four (1-4 and 5-8), mirrored so that location 1 of trays 1 and 3 is on the bottom
# row and the right-hand trays count from the right. Chip id = (tray - 1) * 8 + (location - 1).
_TRAY_BLOCKS = {(0, 0): (2, ((1, 2, 3, 4), (5, 6, 7, 8))), (0, 1): (4, ((4, 3, 2, 1), (8, 7, 6, 5))),
                (1, 0): (1, ((5, 6, 7, 8), (1, 2, 3, 4))), (1, 1): (3, ((8, 7, 6, 5), (4, 3, 2, 1)))}


def galaxy_chip(row: int, col: int) -> int:
    tray, locations = _TRAY_BLOCKS[(row // 2, col // 4)]
    return (tray - 1) * CHIPS_PER_TRAY + locations[row % 2][col % 4] - 1


SYSTEMS = [
    GridSystem("galaxy_6u.yaml", "a 6U Wormhole Galaxy: 32 chips on one board (ubb), all on PCIe, four trays of "
               "8 wired as a 4x8 grid with 4 ethernet channels between neighbours", "wormhole_b0", "ubb", 4, 8, 4,
               chips_per_board=32),
    GridSystem("p150x4.yaml", "a Blackhole QuietBox: four p150 cards, each chip on PCIe, linked in a ring "
               "(a 2x2 grid) with 4 channels per link", "blackhole", "p150", 2, 2, 4, chips_per_board=1),
    GridSystem("p150x8.yaml", "a Blackhole LoudBox: eight p150 cards, each chip on PCIe, a 2x4 grid with 2 "
               "channels per link", "blackhole", "p150", 2, 4, 2, chips_per_board=1),
    GridSystem("galaxy_bh.yaml", "a Blackhole Galaxy: 32 chips on one board (ubb_blackhole), all on PCIe, four "
               "trays of 8 wired as a 4x8 grid with 2 channels per link", "blackhole", "ubb_blackhole", 4, 8, 2,
               chips_per_board=32),
    GridSystem("p300x2.yaml", "a Blackhole QuietBox 2: two p300 cards (a row each), all four chips on PCIe, linked "
               "in a ring (a 2x2 grid) with 2 channels per link", "blackhole", "p300", 2, 2, 2, chips_per_board=2),
]



def render(system: GridSystem) -> str:
    lines = [f"# Mock cluster for ttnn (TT_METAL_MOCK_CLUSTER_DESC_PATH): {system.title}.",
             "# Written by tools/make_mock_clusters.py.",
             f"arch: {{{', '.join(f'{chip}: {system.arch}' for chip in range(system.chips))}}}",
             "chips: {}",
             "ethernet_connections:"]
    next_channel = [0] * system.chips
    for chip, other in system.neighbour_pairs():
        for _ in range(system.links):
            here, there = next_channel[chip], next_channel[other]
            next_channel[chip], next_channel[other] = here + 1, there + 1
            lines.append(f"  - [{{chip: {chip}, chan: {here}}}, {{chip: {other}, chan: {there}}}]")
    mmio = ", ".join(f"{{{chip}: {chip}}}" for chip in range(system.chips))
    lines.append(f"chips_with_mmio: [{mmio}]")
    lines.append("harvesting:")
    variants = HARVESTING[system.board_type]
    lines += [f"  {chip}: {variants[chip % len(variants)]}" for chip in range(system.chips)]
    if system.chips_per_board == 2:  # p300: each card's left and right chip
        lines.append(f"asic_locations: {{{', '.join(f'{chip}: {chip % 2}' for chip in range(system.chips))}}}")
    if system.galaxy:  # trays of 8 chips
        trays = TRAY_BUS_BITS[system.arch]
        bus = {chip: trays[chip // CHIPS_PER_TRAY] | (chip % CHIPS_PER_TRAY + 1) for chip in range(system.chips)}
        buses = ", ".join(f'{chip}: "{number:#06x}"' for chip, number in bus.items())
        lines.append(f"chip_to_bus_id: {{{buses}}}")
        locations = ", ".join(f"{chip}: {chip % CHIPS_PER_TRAY + 1}" for chip in range(system.chips))
        lines.append(f"asic_locations: {{{locations}}}")
    lines.append(f"chip_to_boardtype: {{{', '.join(f'{c}: {system.board_type}' for c in range(system.chips))}}}")
    lines.append("boards:")
    code = BOARD_CODES[system.board_type] << 36
    per = system.chips_per_board
    for board in range(system.chips // per):
        chips = ", ".join(str(chip) for chip in range(board * per, board * per + per))
        lines.append(f"  - [{{board_id: {code + 0x100 + board}}}, {{board_type: {system.board_type}}}, "
                     f"{{chips: [{chips}]}}]")
    return "\n".join(lines) + "\n"


def main() -> None:
    for system in SYSTEMS:
        (OUT / system.file).write_text(render(system))
        print(OUT / system.file)


if __name__ == "__main__":
    main()
