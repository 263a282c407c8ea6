"""Copy the browser tests' notebook screenshots into docs/notebooks/, in full colour at the size they were taken.

Run the browser tests first (they write test-output/browser/<notebook>-first.png, the first screen a learner sees
after Run All at 1280×800, and <notebook>.png, the whole notebook), then:

    .venv/bin/python tools/notebook_screenshots.py

The first screens are kept as PNG, pixel for pixel; the whole notebooks, which are long, as JPEG at full width
(quality 85: the text stays sharp enough to read at 100 %). docs/notebooks.md shows them.
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "test-output" / "browser"
TARGET = ROOT / "docs" / "notebooks"
JPEG_QUALITY = 85


def copy_first_screen(source: Path, target: Path) -> int:
    with Image.open(source) as image:
        image.convert("RGB").save(target, optimize=True)
    return target.stat().st_size


def copy_whole_notebook(source: Path, target: Path) -> int:
    with Image.open(source) as image:
        image.convert("RGB").save(target, quality=JPEG_QUALITY, optimize=True, progressive=True)
    return target.stat().st_size


def main() -> int:
    firsts = sorted(SOURCE.glob("[0-9][0-9]_*-first.png"))
    wholes = sorted(path for path in SOURCE.glob("[0-9][0-9]_*.png") if not path.stem.endswith("-first"))
    if not firsts or not wholes:
        print(f"No screenshots in {SOURCE}: run the browser tests first (pytest tests/browser).", file=sys.stderr)
        return 2
    TARGET.mkdir(parents=True, exist_ok=True)
    for stale in TARGET.glob("*.png"):
        stale.unlink()
    for shot in firsts:
        print(f"{shot.name}: {copy_first_screen(shot, TARGET / shot.name) / 1024:.0f} KiB")
    for shot in wholes:
        target = TARGET / f"{shot.stem}.jpg"
        print(f"{target.name}: {copy_whole_notebook(shot, target) / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
