"""Make ttlesson/data/preview-sample.mp4: the film a notebook's preview shows before the learner has made one.

    python tools/make_preview_sample.py            # about 15 s on two CPU cores

It is what a learner's own run makes with the offline tiny model: the World's Fair storyboard rendered with the
tiny model's defaults on the CPU (float32: the same frames on every machine), stitched as the lesson's step 6
does (2 fps, H.264, CRF 18): 26 KiB, byte for byte the same on each run with the same ffmpeg.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ttlesson.notebook.display import SAMPLE_FILM  # noqa: E402
from ttlesson.render import render  # noqa: E402
from ttlesson.video import stitch  # noqa: E402


def main() -> None:
    with tempfile.TemporaryDirectory() as work:
        render("worlds-fair", work, model="tiny", backend="torch")
        info = stitch(work, Path(work) / SAMPLE_FILM, fps=2, crf=18)
        target = ROOT / "ttlesson" / "data" / SAMPLE_FILM
        shutil.copyfile(info.path, target)
    print(f"{target}: {info.facts}, {info.size_bytes / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
