"""Frames spread over real worker processes on the CPU (torch backend, offline tiny model)."""

import os
import signal

import pytest
from helpers import call_cli, one_line_error

from ttlesson import manifest, storyboard
from ttlesson.errors import FramesLostError, TTLessonError
from ttlesson.fileio import sha256_file
from ttlesson.progress import FrameDone, FrameStarted, ModelLoaded, WorkerStarted
from ttlesson.render import render

BOARD = storyboard.loads('["a harbour at dawn", "a harbour at dusk", {"prompt": "a lighthouse", "seed": 77}, '
                         '{"prompt": "a pier", "negative_prompt": "fog"}, "a ferry"]')
SETTINGS = {"model": "tiny", "backend": "torch", "device": "cpu", "steps": 3, "size": 64}


def shas(out):
    return {p.name: sha256_file(p) for p in sorted(manifest.frames_dir(out).glob("*.png"))}


def without_timing(out):
    return [{k: v for k, v in record.__dict__.items() if k not in ("seconds", "warmup")}
            for _, record in sorted(manifest.load(out).frames.items())]


@pytest.fixture(scope="module")
def one_worker(tmp_path_factory, tiny_folder):
    out = tmp_path_factory.mktemp("one")
    render(BOARD, out, devices=1, **SETTINGS)
    return out


@pytest.mark.slow
def test_two_workers_make_the_same_pngs_and_manifest_as_one(one_worker, tmp_path):
    events = []
    result = render(BOARD, tmp_path, devices=2, on_event=events.append, **SETTINGS)
    assert shas(tmp_path) == shas(one_worker) and len(shas(tmp_path)) == 5
    assert without_timing(tmp_path) == without_timing(one_worker)
    assert sorted(result.made) == [0, 1, 2, 3, 4] and result.device == "2 workers on cpu"
    assert "5 made on 2 workers on cpu" in str(result)  # what `ttlesson render --devices 2` prints (the CLI's
    # --devices 2 starting two real workers: test_misuse.py::test_workers_die_when_their_render_is_killed)

    workers = [e for e in events if isinstance(e, WorkerStarted)]
    assert sorted(w.worker for w in workers) == ["cpu#1", "cpu#2"] and len({w.pid for w in workers}) == 2
    assert os.getpid() not in {w.pid for w in workers}
    loaded = next(e for e in events if isinstance(e, ModelLoaded))
    assert loaded.reports_steps is False and "2 worker processes" in loaded.note
    started = [e for e in events if isinstance(e, FrameStarted)]
    assert [e.index for e in started] == [0, 1, 2, 3, 4]  # handed out in storyboard order
    assert {e.device for e in started} == {"cpu#1", "cpu#2"}
    assert sorted(e.index for e in events if isinstance(e, FrameDone)) == [0, 1, 2, 3, 4]


@pytest.mark.slow
def test_a_killed_worker_loses_only_its_frame_and_a_rerun_makes_it(one_worker, tmp_path):
    pids = {}

    def kill_the_worker_holding_frame_1(event):
        if isinstance(event, WorkerStarted):
            pids[event.worker] = event.pid
        if isinstance(event, FrameStarted) and event.index == 1:
            os.kill(pids[event.device], signal.SIGKILL)

    with pytest.raises(FramesLostError) as err:
        render(BOARD, tmp_path, devices=2, on_event=kill_the_worker_holding_frame_1, **SETTINGS)
    message = str(err.value)
    assert message.startswith("Frame 1 was not made because worker cpu#")
    assert "(the 4 other frames are saved)" in message
    assert message.endswith("run the same command again to make them.")
    assert sorted(manifest.load(tmp_path).frames) == [0, 2, 3, 4]
    assert sorted(shas(tmp_path)) == ["frame_000.png", "frame_002.png", "frame_003.png", "frame_004.png"]

    again = render(BOARD, tmp_path, devices=2, **SETTINGS)
    assert again.made == [1] and again.kept == [0, 2, 3, 4]
    assert shas(tmp_path) == shas(one_worker)


@pytest.mark.parametrize("devices", [0, -1, "some", 1.5, True])
def test_bad_devices_are_refused(tmp_path, devices):
    with pytest.raises(TTLessonError, match="Devices .* is not understood; give a whole number from 1 to 1024, or all"):
        render(BOARD, tmp_path, devices=devices, **SETTINGS)


def test_cli_bad_devices_is_one_line(tmp_path):
    line = one_line_error(call_cli("render", "worlds-fair", "--model", "tiny", "--out", tmp_path, "--devices", "0"))
    assert "--devices 0 is out of range; give a whole number from 1 to 1024, or all" in line


def test_devices_with_a_loaded_backend_is_refused(tmp_path, tiny_backend):
    with pytest.raises(TTLessonError, match="devices= needs a backend name"):
        render(BOARD, tmp_path, model="tiny", backend=tiny_backend, devices=2)


def worker_processes(marker: str) -> list[int]:
    """Live processes whose environment carries ``marker`` (the render and any worker it started)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                environ = open(f"/proc/{entry}/environ", "rb").read()
                state = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if marker.encode() in environ and state != "Z":
                found.append(int(entry))
    return found


def test_how_many_workers(monkeypatch):
    import torch

    from ttlesson.backends.workers import plan_workers
    from ttlesson.errors import BackendUnavailableError

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)))
    monkeypatch.setattr(torch, "get_num_threads", lambda: 8)
    assert plan_workers("all", "cpu", 10) == ["cpu", "cpu"]  # 16 cores / 8 threads per worker
    assert plan_workers(3, "cpu", 10) == ["cpu"] * 3 and plan_workers(3, "cpu", 2) == ["cpu"] * 2
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert plan_workers("all", None, 10) == ["cuda:0", "cuda:1", "cuda:2", "cuda:3"]
    assert plan_workers("all", "cuda", 3) == ["cuda:0", "cuda:1", "cuda:2"]
    with pytest.raises(BackendUnavailableError, match="--devices 5 asks for more GPUs than torch sees \\(4\\)"):
        plan_workers(5, "cuda", 10)
    with pytest.raises(BackendUnavailableError, match="--device cuda:1 names one device, but --devices 2"):
        plan_workers(2, "cuda:1", 10)
