"""The ttlesson command as a user runs it: the installed console script in a subprocess."""

import json
import os
import signal
import subprocess
import time

import pytest
from helpers import call_cli, one_line_error, run_cli, ttlesson_command
from PIL import Image

from ttlesson import manifest
from ttlesson.fileio import sha256_file
from ttlesson.video import probe


@pytest.mark.parametrize("command", [[], ["render"], ["stitch"], ["video"], ["check-tt"], ["import-demo"]])
def test_help(command):
    proc = call_cli(*command, "--help")
    assert proc.returncode == 0 and "usage: ttlesson" in proc.stdout


@pytest.mark.slow
def test_video_end_to_end_then_nothing_remade(tmp_path):
    out = tmp_path / "wf"
    proc = run_cli("video", "worlds-fair", "--model", "tiny", "--out", out)
    assert proc.returncode == 0, proc.stderr
    mp4 = proc.stdout.strip().splitlines()[-1]
    assert mp4 == str(out / "worlds-fair.mp4")
    info = probe(mp4)
    assert (info.codec, info.pix_fmt, info.frames, info.duration) == ("h264", "yuv420p", 10, 5.0)
    assert "10 made on cpu" in proc.stdout

    stamps = {p: p.stat().st_mtime_ns for p in manifest.frames_dir(out).iterdir()}
    again = call_cli("video", "worlds-fair", "--model", "tiny", "--out", out)
    assert again.returncode == 0 and "0 made, 10 kept" in again.stdout
    assert {p: p.stat().st_mtime_ns for p in manifest.frames_dir(out).iterdir()} == stamps


@pytest.mark.slow
def test_render_and_stitch_separately(tmp_path):
    board = tmp_path / "board.txt"
    board.write_text("# two shots\na harbour at dawn\na harbour at dusk\n")
    assert call_cli("render", board, "--model", "tiny", "--out", tmp_path / "o", "--steps", "2",
                    "--size", "64").returncode == 0
    proc = run_cli("stitch", tmp_path / "o", "--fps", "1", "--output", tmp_path / "h.mp4")
    assert proc.returncode == 0, proc.stderr
    info = probe(tmp_path / "h.mp4")
    assert (info.frames, info.duration, info.width) == (2, 2.0, 64)


def bad_storyboard(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('[\n  {"prompt": "ok"},\n  {"prompt": ""}\n]\n')
    return path


BAD_INPUT = [
    (lambda t: ["render", t / "missing.json", "--out", t / "o"], "does not exist"),
    (lambda t: ["render", bad_storyboard(t), "--out", t / "o"], 'bad.json, line 3 (frame 1): "prompt" is empty'),
    (lambda t: ["render", "worlds-fair", "--out", t / "o", "--model", "sd99"], "Unknown model 'sd99'"),
    (lambda t: ["render", "worlds-fair", "--out", t / "o", "--size", "500"], "Size 500 does not work"),
    (lambda t: ["render", "worlds-fair", "--out", t / "o", "--steps", "0"], "Steps 0 is out of range"),
    (lambda t: ["render", "worlds-fair", "--out", t / "o", "--steps", "many"], "invalid int value: 'many'"),
    (lambda t: ["render", "worlds-fair", "--out", t / "o", "--backend", "gpu"], "invalid choice: 'gpu'"),
    (lambda t: ["render", "worlds-fair", "--out", t / "o", "--backend", "tt"], "No Tenstorrent device found"),
    (lambda t: ["render", "worlds-fair", "--out", t / "o", "--backend", "tt", "--size", "256"],
     "No Tenstorrent device found"),  # the blocking problem first; the size follows in the same sentence
    (lambda t: ["render", "worlds-fair", "--out", t / "o", "--backend", "tt", "--size", "256"],
     "on a machine with one, this run would also need --size 512."),
    (lambda t: ["render", "worlds-fair", "--out", t / "o", "--backend", "tt", "--device", "cuda"],
     "--device cuda picks a torch device"),
    (lambda t: ["render", "worlds-fair", "--out", t / "o", "--devices", "none"], "--devices 'none' is not understood"),
    (lambda t: ["check-tt", "--out", t], "No Tenstorrent device found"),
    (lambda t: ["import-demo", t, "--out", t / "o"], "holds no input_data_<i>_512x512_ttnn.png files"),
    (lambda t: ["render", "worlds-fair"], "the following arguments are required: --out"),
    (lambda t: ["stitch", t / "nowhere"], "does not exist"),
    (lambda t: ["stitch", t, "--crf", "99"], "--crf 99 is out of range"),
    (lambda t: ["bogus"], "invalid choice: 'bogus'"),
]


@pytest.mark.parametrize("args,expected", BAD_INPUT, ids=range(len(BAD_INPUT)))
def test_bad_input_exits_2_with_one_line(tmp_path, args, expected):
    proc = call_cli(*args(tmp_path))
    assert expected in one_line_error(proc)


@pytest.mark.slow
def test_bad_input_leaves_earlier_frames_intact(tmp_path):
    out = tmp_path / "o"
    assert call_cli("render", "worlds-fair", "--model", "tiny", "--out", out, "--steps", "2").returncode == 0
    before = {p.name: sha256_file(p) for p in manifest.frames_dir(out).iterdir()}
    for args in (["--steps", "3"], ["--size", "500"], ["--model", "sd99"]):
        one_line_error(call_cli("render", "worlds-fair", "--model", "tiny", "--out", out, "--steps", "2", *args))
    assert {p.name: sha256_file(p) for p in manifest.frames_dir(out).iterdir()} == before
    assert len(manifest.load(out).frames) == 10


def wait_for_frames(out, count, proc, timeout=600):  # generous: a shared machine can be slow
    """Wait until ``count`` finished PNGs are in place. The promise is a PNG never without its manifest entry (the
    entry is saved first, then the PNG renamed into place), so a kill right after the manifest lists a frame may
    leave that frame's entry without its PNG: count the PNGs, not the entries."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if len(list(manifest.frames_dir(out).glob("frame_*.png"))) >= count:
            return
        time.sleep(0.02)
    raise AssertionError("the render did not reach the frame to interrupt at")


def start_render(out, steps, size=64):  # 64×64: the same code path as the model's 128×128, in less time
    return subprocess.Popen([*ttlesson_command(), "render", "worlds-fair", "--model", "tiny", "--out", str(out),
                             "--steps", str(steps), "--size", str(size)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=os.environ.copy())


def assert_only_whole_frames(out):
    book = manifest.load(out)
    for path in manifest.frames_dir(out).glob("frame_*.png"):
        with Image.open(path) as image:
            image.verify()
        index = int(path.stem.split("_")[1])
        assert book.frames[index].sha256 == sha256_file(path)  # a finished PNG always has its manifest entry


@pytest.mark.slow
def test_killed_render_leaves_whole_frames_and_resumes(tmp_path):
    out = tmp_path / "o"
    proc = start_render(out, steps=20)
    wait_for_frames(out, 3, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert_only_whole_frames(out)
    finished = {p.name: p.stat().st_mtime_ns for p in manifest.frames_dir(out).glob("frame_*.png")}
    assert 3 <= len(finished) < 10

    again = call_cli("render", "worlds-fair", "--model", "tiny", "--out", out, "--steps", "20", "--size", "64")
    assert again.returncode == 0, again.stderr
    assert f"{10 - len(finished)} made" in again.stdout and f"{len(finished)} kept" in again.stdout
    assert {n: t for n, t in ((p.name, p.stat().st_mtime_ns) for p in manifest.frames_dir(out).glob("*.png"))
            if n in finished} == finished
    assert sorted(p.name for p in manifest.frames_dir(out).iterdir()) == [f"frame_{i:03d}.png" for i in range(10)]


@pytest.mark.slow
def test_ctrl_c_exits_130_and_keeps_frames(tmp_path):
    out = tmp_path / "o"
    proc = start_render(out, steps=20)
    wait_for_frames(out, 2, proc)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "interrupted; finished frames are kept" in stderr and "Traceback" not in stderr
    assert_only_whole_frames(out)


@pytest.mark.slow
def test_bench_reports_each_part_and_leaves_nothing_behind(tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # what TMPDIR does for a fresh process
    proc = call_cli("bench", "--frames", "2", "--steps", "2", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert (result["model"], result["device"], result["frames"], result["steps"]) == ("tiny", "cpu", 2, 2)
    for key in ("load_seconds", "warmup_seconds", "steady_seconds_per_frame", "stitch_seconds", "frames_per_second"):
        assert result[key] > 0, key
    assert not list(tmp_path.glob("ttlesson-bench-*"))  # the scratch folder is gone
