"""Ctrl-C and SIGTERM on a render with CPU worker processes: one sentence on stderr, the shell's exit status,
finished frames kept, no worker left and nothing from multiprocessing's resource tracker (leaked semaphores)."""

import json
import os
import signal
import subprocess
import time

import pytest
from helpers import ttlesson_command
from test_cli import assert_only_whole_frames
from test_workers import worker_processes

from ttlesson.fileio import sha256_file

KEPT = "finished frames are kept, run the same command to resume."


def start_render(out, marker: str) -> subprocess.Popen:
    """Two CPU workers in a session of their own, as a terminal runs a command in its own process group."""
    name, value = marker.split("=")
    return subprocess.Popen([*ttlesson_command(), "render", "worlds-fair", "--model", "tiny", "--device", "cpu",
                             "--steps", "40", "--size", "64", "--devices", "2", "--quiet", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
                            env={**os.environ, name: value}, start_new_session=True)


def listed_frames(out) -> list[dict]:
    """The frames the manifest lists now ([] before it is written; it is replaced whole, never half-written)."""
    try:
        return json.loads((out / "manifest.json").read_text())["frames"]
    except (OSError, ValueError, KeyError):
        return []


def wait_until_listed(out, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not listed_frames(out):
        assert proc.poll() is None, f"the render ended before its first frame: {proc.communicate()[1]}"
        assert time.monotonic() < deadline, "no frame in the manifest in time"
        time.sleep(0.05)
    assert proc.poll() is None, "the render finished before it could be interrupted"


def wait_for_no_workers(marker: str, timeout: float = 10) -> list[int]:
    deadline = time.monotonic() + timeout
    while worker_processes(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    return worker_processes(marker)


@pytest.mark.slow
@pytest.mark.parametrize("how, status", [("ctrl-c", 130), ("sigterm", 143)])
def test_a_stopped_render_says_one_sentence_and_leaves_nothing_behind(tmp_path, tiny_folder, how, status):
    marker = f"TTLESSON_TEST_RUN={tmp_path.name}"
    out = tmp_path / "o"
    proc = start_render(out, marker)
    try:
        wait_until_listed(out, proc)
        if how == "ctrl-c":
            os.killpg(proc.pid, signal.SIGINT)  # what a terminal does: the whole foreground group gets it
        else:
            proc.send_signal(signal.SIGTERM)  # a job scheduler or `kill`: the render alone
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    assert proc.returncode == status, stderr
    for noise in ("resource_tracker", "leaked", "Traceback"):
        assert noise not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("ttlesson render: ") and lines[0].endswith(KEPT), stderr

    frames = listed_frames(out)
    assert frames, "the frames finished before the signal are gone from the manifest"
    for frame in frames:
        png = out / frame["file"]
        assert png.is_file() and sha256_file(png) == frame["sha256"], frame["file"]
    assert_only_whole_frames(out)  # and every PNG on disk is whole and listed
    assert wait_for_no_workers(marker) == []
