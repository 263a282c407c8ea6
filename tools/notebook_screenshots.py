"""Copy the browser tests' notebook screenshots into docs/notebooks/, made small enough to commit.

Run the browser tests first (they write test-output/browser/<notebook>.png, the whole notebook after Run All in
JupyterLab in Chromium), then:

    .venv/bin/python tools/notebook_screenshots.py

Each picture is halved in width and stored with a 32-colour palette, which keeps text readable at a fraction of
the size; docs/notebooks.md shows them.
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "test-output" / "browser"
TARGET = ROOT / "docs" / "notebooks"
WIDTH = 640
COLOURS = 32


def shrink(source: Path, target: Path) -> int:
    with Image.open(source) as image:
        image = image.convert("RGB")
        height = round(image.height * WIDTH / image.width)
        small = image.resize((WIDTH, height), Image.LANCZOS).quantize(colors=COLOURS, method=Image.MEDIANCUT)
        small.save(target, optimize=True)
    return target.stat().st_size


def main() -> int:
    shots = sorted(SOURCE.glob("[0-9][0-9]_*.png"))
    if not shots:
        print(f"No screenshots in {SOURCE}: run the browser tests first (pytest tests/browser).", file=sys.stderr)
        return 2
    TARGET.mkdir(parents=True, exist_ok=True)
    for shot in shots:
        size = shrink(shot, TARGET / shot.name)
        print(f"{shot.name}: {size / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
