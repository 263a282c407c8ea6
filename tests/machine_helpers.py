"""Helpers for the detect / doctor / auth tests: the sources that detection reads (sysfs trees, tt-smi snapshots,
mock cluster descriptors), built in temporary folders. Running the CLI is in ``helpers``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from helpers import MOCK_ENV

CLUSTERS = Path(__file__).parent / "data" / "clusters"
HAS_TT_DEVICE = Path("/dev/tenstorrent").exists() or Path("/sys/class/tenstorrent").exists()


def make_sysfs(root: Path, cards: list[str | tuple[str, str]]) -> Path:
    """A copy of /sys with one ``class/tenstorrent/tenstorrent!N`` entry per item: a card type, or a
    (card type, serial) pair (chips of one card share a serial)."""
    for number, card in enumerate(cards):
        board, serial = card if isinstance(card, tuple) else (card, None)
        entry = root / "class" / "tenstorrent" / f"tenstorrent!{number}"
        entry.mkdir(parents=True)
        (entry / "tt_card_type").write_text(board + "\n")
        if serial:
            (entry / "tt_serial").write_text(serial + "\n")
    return root


def snapshot_entry(board_type: str, board_id: str | None = None, bus_id: str = "N/A") -> dict:
    """One ``device_info`` entry as ``tt-smi -s`` writes it (the keys detection reads, and a few others)."""
    return {
        "smbus_telem": {},
        "board_info": {"bus_id": bus_id, "board_type": board_type, "board_id": board_id or "N/A",
                       "coords": "N/A", "dram_status": True, "dram_speed": "16G", "pcie_speed": 4, "pcie_width": 16},
        "telemetry": {"voltage": "0.80", "current": "20.0", "power": "16.0", "aiclk": "1000",
                      "asic_temperature": "45.0"},
        "firmwares": {}, "limits": {},
    }


def make_snapshot(path: Path, entries: list[dict]) -> Path:
    body = {
        "time": "2026-11-20T12:00:00",
        "host_info": {"OS": "Linux", "Distro": "Ubuntu 22.04", "Kernel": "6.8.0", "Driver": "TT-KMD 2.4.1"},
        "host_sw_vers": {"tt_smi": "3.0.30", "pyluwen": "0.7.9", "tt_umd": "0.5.0"},
        "device_info": entries,
    }
    path.write_text(json.dumps(body, indent=4))
    return path


def n300_entries(cards: int) -> list[dict]:
    """tt-smi's entries for ``cards`` n300 cards: PCIe (L) chips first, then the remote (R) ones, as UMD orders."""
    ids = [f"0000014{card:011x}" for card in range(cards)]
    local = [snapshot_entry("n300 L", board_id, f"0000:0{card}:00.0") for card, board_id in enumerate(ids)]
    remote = [snapshot_entry("n300 R", board_id) for board_id in ids]
    return local + remote


RESULT = "TTLESSON-TEST-RESULT "


def run_python_json(program: str, env: dict | None = None, cwd=None, timeout: float = 300) -> dict:
    """Run ``program`` in a fresh interpreter (ttnn keeps one cluster per process) and return the JSON it printed
    on a line starting with ``RESULT``; tt-metal's own log lines around it are ignored."""
    base = {key: value for key, value in os.environ.items()
            if key not in (MOCK_ENV, "TT_METAL_HOME", "TT_LOGGER_FILE", "TT_METAL_CORE_GRID_OVERRIDE_TODEPRECATE")}
    proc = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=timeout,
                          env={**base, **(env or {})}, cwd=cwd, stdin=subprocess.DEVNULL)
    line = next((line for line in reversed(proc.stdout.splitlines()) if line.startswith(RESULT)), None)
    assert line is not None, (proc.returncode, proc.stdout[-2000:], proc.stderr[-3000:])
    # tt-metal's logger writes to the same stdout from its own threads, and may end up on the result's line
    # after the JSON (seen under load): read the JSON value and ignore what follows it.
    value, _ = json.JSONDecoder().raw_decode(line[len(RESULT):])
    return value
