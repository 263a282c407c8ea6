"""``tt-smi -s``: JSON with one ``device_info`` entry per chip, from a saved snapshot or by running tt-smi.

Wormhole entries end in " L" (on PCIe) or " R" (reached over ethernet), so an n300 is two entries and one card;
chips of one card share a ``board_id``. tt-smi may be installed in any of the environments the lesson offers,
not only on ``PATH`` (``find_tt_smi``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from .. import env
from ..errors import HardwareSourceError
from ..tenstorrent.boards import Card, ListedChip, group_into_cards, normalise_board
from .host import HostPaths, SourceAnswer, chips_text, first_line

TT_SMI_TIMEOUT = 20.0


def read_tt_smi(snapshot: str | os.PathLike | None, *, live: bool, timeout: float = TT_SMI_TIMEOUT,
                host: HostPaths | None = None) -> tuple[list[Card], SourceAnswer]:
    """Cards from a saved snapshot (errors are the caller's to fix) or from running ``tt-smi -s`` (errors soft)."""
    if snapshot is not None:
        path = Path(snapshot).expanduser()
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as err:
            raise HardwareSourceError(f"--tt-smi-snapshot {path} cannot be read ({err.strerror or err}); give "
                                      "a file saved with: tt-smi -s > snapshot.json") from err
        chips, about = parse_tt_smi_snapshot(text, str(path))
        return _tt_smi_cards(chips, f"snapshot {path}{about}")
    if not live:
        return [], SourceAnswer("tt-smi", False, "not run: detection was pointed at saved sources")
    output, why_not = _run_tt_smi(timeout, host or HostPaths())
    if output is None:
        return [], SourceAnswer("tt-smi", False, why_not)
    try:
        chips, about = parse_tt_smi_snapshot(output, "tt-smi -s output")
    except HardwareSourceError as err:
        return [], SourceAnswer("tt-smi", False, str(err))
    return _tt_smi_cards(chips, f"tt-smi -s{about}")


def _tt_smi_cards(chips: list[ListedChip], origin: str) -> tuple[list[Card], SourceAnswer]:
    cards = group_into_cards(chips, "tt-smi", lambda kind: kind.chips)
    if not chips:
        return cards, SourceAnswer("tt-smi", True, f"{origin} lists no chips")
    listed = ", ".join(chip.seen_as for chip in chips)
    return cards, SourceAnswer("tt-smi", True, f"{origin} lists {chips_text(len(chips))}: {listed}")


def parse_tt_smi_snapshot(text: str, origin: str) -> tuple[list[ListedChip], str]:
    """The chips a ``tt-smi -s`` JSON lists, and a few words on the tt-smi that wrote it."""
    fix = "save a snapshot with: tt-smi -s > snapshot.json"
    try:
        data = _first_json_object(text)
    except RecursionError as err:  # tt-smi's output is a few levels deep; this is not it
        raise HardwareSourceError(f"{origin} is JSON nested too deeply to be a tt-smi snapshot; {fix}") from err
    if data is None:
        raise HardwareSourceError(f"{origin} is not a tt-smi snapshot (no JSON object in it); {fix}")
    infos = data.get("device_info")
    if not isinstance(infos, list):
        raise HardwareSourceError(f"{origin} has no device_info list, so it is not a tt-smi -s snapshot; {fix}")
    chips = []
    for number, entry in enumerate(infos):
        board_info = entry.get("board_info") if isinstance(entry, dict) else None
        board_type = board_info.get("board_type") if isinstance(board_info, dict) else None
        if not isinstance(board_type, str):
            raise HardwareSourceError(f"{origin}: device_info[{number}] has no board_info.board_type, so its "
                                      f"chip cannot be named; {fix}")
        assert isinstance(board_info, dict)  # board_type is a str only when board_info is a dict
        board_id = _known(board_info.get("board_id"))
        bus = _known(board_info.get("bus_id"))
        chips.append(ListedChip(normalise_board(board_type) if _known(board_type) else "unknown", board_id,
                           f"{board_type.strip()}" + (f" at {bus}" if bus else "")))
    versions = data.get("host_sw_vers")
    version = versions.get("tt_smi") if isinstance(versions, dict) else None
    return chips, (f" (tt-smi {version})" if isinstance(version, str) else "")


def _known(value) -> str | None:
    text = str(value).strip() if value is not None else ""
    return text if text and text.upper() != "N/A" else None


def _first_json_object(text: str) -> dict | None:
    """The first JSON object in ``text``: tt-smi may print log lines before it."""
    decoder = json.JSONDecoder()
    for start in (match.start() for match in re.finditer(r"\{", text)):
        try:
            value, _ = decoder.raw_decode(text, start)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def find_tt_smi(host: HostPaths | None = None, prefix: Path | None = None) -> tuple[Path | None, bool]:
    """(tt-smi's path, whether it is on PATH): PATH first, else where the environments the lesson offers keep it
    (this Python's own bin folder, the tt-installer venv, the cloud image's venv, tt-metal's python_env)."""
    found = shutil.which("tt-smi")
    if found:
        return Path(found), True
    host = host or HostPaths()
    home = env.text(env.TT_METAL_HOME)
    places = [Path(prefix or sys.prefix) / "bin", host.home / ".tenstorrent-venv" / "bin",
              host.opt / "venv-metal" / "bin"]
    places += [Path(home).expanduser() / "python_env" / "bin"] if home else []
    return next(((place / "tt-smi", False) for place in places if (place / "tt-smi").is_file()), (None, False))


def _run_tt_smi(timeout: float, host: HostPaths) -> tuple[str | None, str]:
    """(``tt-smi -s`` stdout, or None; why there is none)."""
    exe, _ = find_tt_smi(host)
    if exe is None:
        return None, "not on PATH (pip install tt-smi, or activate the environment that has it)"
    try:
        proc = subprocess.run([exe, "-s"], capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return None, f"tt-smi -s did not answer within {timeout:g} s; a process may hold the device"
    except OSError as err:
        return None, f"{exe} could not be run ({err.strerror or err})"
    if proc.returncode != 0:
        said = first_line(_ANSI.sub("", proc.stdout + "\n" + proc.stderr)) or "no message"
        return None, f"tt-smi -s exited {proc.returncode}: {said}"
    return proc.stdout, ""
