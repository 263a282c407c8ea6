"""Around the render: what a workshop room shares. Two kernels saving the same storyboard at once."""

from __future__ import annotations

import json
import subprocess
import sys

from ttlesson import storyboard

ADDER = """
import sys
from ttlesson import storyboard
for i in range(int(sys.argv[3])):
    storyboard.update_file(sys.argv[1], lambda board: board.append(f"{sys.argv[2]} frame {i}", seed=i))
"""


def test_two_kernels_adding_frames_at_once_keep_every_frame(tmp_path):
    """What notebook 07's Add to storyboard does, from two processes at once, 40 frames each, while a third
    process reads the file the whole time: no frame lost, and never a half-written file."""
    path = tmp_path / "prompts.json"
    storyboard.load("worlds-fair").save(path)
    adders = [subprocess.Popen([sys.executable, "-c", ADDER, str(path), name, "40"]) for name in ("ada", "bo")]
    reads = 0
    while any(adder.poll() is None for adder in adders):
        json.loads(path.read_text())  # a torn file would not parse
        reads += 1
    assert [adder.wait() for adder in adders] == [0, 0]
    prompts = storyboard.load(path).prompts
    assert len(prompts) == 10 + 80 and reads > 0
    for name in ("ada", "bo"):
        assert [p for p in prompts if p.startswith(name)] == [f"{name} frame {i}" for i in range(40)]


def test_the_first_cell_that_needs_the_storyboard_keeps_a_frame_added_meanwhile(tmp_path, monkeypatch):
    from ttlesson.notebook import lesson, settings

    monkeypatch.setenv("TTLESSON_WORKDIR", str(tmp_path))
    cfg = settings.current()
    storyboard.update_file(lesson.storyboard_path(cfg), lambda board: board.append("added by another kernel"))
    assert lesson.ensure_storyboard(cfg).prompts == ["added by another kernel"]
