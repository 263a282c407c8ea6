"""The record that this machine has made frames on Tenstorrent silicon, so the notebooks can say so.

``ttlesson check-tt`` writes it when tt-metal's demo frame was made on a real chip and matches the demo's image
(or there was none to compare with): the board, the device, the date, the load, compile and frame times, ttnn's
and tt-metal's versions. It lives in ttlesson's cache (``TTLESSON_CACHE``), one per machine and cache. Each
notebook's first cell prints ``note()``: that record, or that ttlesson's Tenstorrent path has not run here yet.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from .. import env
from ..fileio import write_atomic

RECORD_NAME = "silicon-run.json"
NOT_YET = ("ttlesson's Tenstorrent path has not run on silicon here yet: what the notebooks say about Tenstorrent "
           "hardware comes from tt-metal's source and published numbers (docs/tt-backend.md); a run of ttlesson "
           "check-tt on a machine with a card records it.")


def record_path() -> Path:
    return env.cache_root() / RECORD_NAME


def record_run(result) -> Path:
    """Keep a check-tt result (``backends.tt.check.CheckResult``) as this machine's record; returns its path."""
    data = {"date": time.strftime("%Y-%m-%d"), "board": result.board, "device": result.device,
            "frame_seconds": round(result.frame_seconds, 2), "compile_seconds": round(result.compile_seconds, 1),
            "load_seconds": round(result.load_seconds, 1), "steps": result.steps, "ttnn": result.ttnn,
            "tt_metal": result.tt_metal,
            "compared": result.comparison.verdict if result.comparison else "no demo image to compare with"}
    return write_atomic(record_path(), json.dumps(data, indent=2) + "\n")


def note() -> str:
    """One line for a notebook: when and on what this machine made frames on silicon, or that it has not yet."""
    try:
        data = json.loads(record_path().read_text(encoding="utf-8"))
        return (f"ttlesson made tt-metal's demo frame on this machine's {data['board']} ({data['device']}) on "
                f"{data['date']}: one {data['steps']}-step frame in {data['frame_seconds']} s after "
                f"{data['compile_seconds']} s of compiling (ttlesson check-tt; {data['compared']}).")
    except (OSError, ValueError, KeyError, TypeError):  # no record, or one this version cannot read: say not yet
        return NOT_YET
