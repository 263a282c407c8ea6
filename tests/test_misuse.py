"""Hostile but realistic use: damaged render folders, full and read-only disks, two runs at once, signals at
bad moments, odd arguments. One test per class of issue 9, on the real render, stitch and ffmpeg (tiny model),
real signals and real subprocesses. Nothing may be lost, nothing overwritten unasked, and no traceback shown.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import call_cli, one_line_error, run_cli, ttlesson_command
from PIL import Image

from ttlesson import manifest, storyboard, video
from ttlesson.errors import FolderBusyError, FrameCheckError, TTLessonError, VideoError
from ttlesson.fileio import folder_lock, sha256_file
from ttlesson.progress import FrameDone
from ttlesson.render import render

BOARD = storyboard.loads('["a harbour at dawn", "a harbour at noon", "a harbour at dusk"]')
SMALL = {"model": "tiny", "steps": 2, "size": 64}
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


# --- shared material ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_render(tmp_path_factory, tiny_backend) -> Path:
    """Three 64×64 frames of the tiny model, rendered once for the whole module; tests work on copies."""
    out = tmp_path_factory.mktemp("small") / "render"
    BOARD.name = "harbour"
    render(BOARD, out, backend=tiny_backend, **SMALL)
    return out


def copy_of(render_dir: Path, where: Path) -> Path:
    target = where / "render"
    shutil.copytree(render_dir, target, ignore=shutil.ignore_patterns(".ttlesson.lock"))
    return target


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (hidden ones too) and its SHA-256."""
    return {str(p.relative_to(folder)): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*.partial*"))


@contextlib.contextmanager
def tmpfs(path: Path, size: str, read_only: bool = False):
    """A small real file system (a full disk is a tmpfs that is full); root only."""
    if not IS_ROOT:
        pytest.skip("mounting a tmpfs (full or read-only disk) needs root")
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(folder: Path, leave: int = 0) -> Path:
    """Fill the file system holding ``folder`` as another program would: to the last byte, or all but ``leave``."""
    filler = folder / "filler.bin"
    with open(filler, "wb", buffering=0) as handle:
        with contextlib.suppress(OSError):
            while True:
                handle.write(b"\0" * 4096)
    if leave:
        os.truncate(filler, max(0, filler.stat().st_size - leave))
    return filler


def children(pid: int, name: str) -> list[int]:
    """Live (not zombie) child processes of ``pid`` whose command name starts with ``name``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        if fields.get("PPid", "").strip() == str(pid) and fields.get("Name", "").startswith(name) \
                and not fields.get("State", "").startswith("Z"):
            found.append(int(entry))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_until(condition, timeout: float = 120, what: str = "the condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def noise_frames(folder: Path, count: int, size: int) -> Path:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(folder / f"frame_{index:03d}.png")
    return folder


# --- data loss: stitch never replaces a good video with a bad one ------------------------------------------

def test_a_stitch_that_fails_its_check_keeps_the_old_video(small_render, tmp_path, monkeypatch):
    folder = copy_of(small_render, tmp_path)
    good = video.stitch(folder)
    before = sha256_file(good.path)
    # Stand-in for a bug in the frame arithmetic (the real one is exact, so only a stand-in reaches this branch):
    # the plan claims one frame more per still than ffmpeg will write, so the real video fails its check.
    real_plan = video.plan_timing
    monkeypatch.setattr(video.stitching, "plan_timing", lambda fps, crossfade=0.0: video.Timing(
        **{**real_plan(fps, crossfade).__dict__, "per_still": real_plan(fps, crossfade).per_still + 1}))
    with pytest.raises(VideoError, match=r"came out wrong \(3 frames, not 6.*so it was not kept \(the earlier "
                                         r"video, if any, is untouched\)"):
        video.stitch(folder, fps=3)
    assert sha256_file(good.path) == before and leftovers(folder) == []


@pytest.fixture(scope="module")
def slow_frames(tmp_path_factory) -> Path:
    """Six noise stills that take ffmpeg seconds to encode at 0.1 fps with a 5 s crossfade (1,440 frames)."""
    return noise_frames(tmp_path_factory.mktemp("slow") / "frames", 6, 256)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=["INT", "TERM", "KILL"])
def test_a_stitch_stopped_by_a_signal_leaves_the_old_video_and_no_ffmpeg(slow_frames, tmp_path, signum):
    output = tmp_path / "film.mp4"
    old = video.stitch(slow_frames, output)
    before = sha256_file(old.path)
    proc = subprocess.Popen([*ttlesson_command(), "stitch", str(slow_frames), "--output", str(output), "--fps", "0.1",
                             "--crossfade", "5", "--crf", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    partial = wait_until(lambda: [p for p in tmp_path.glob(".film.mp4.*.partial.mp4") if p.stat().st_size > 0],
                         what="ffmpeg to start writing")
    assert partial and len(children(proc.pid, "ffmpeg")) == 1
    (ffmpeg,) = children(proc.pid, "ffmpeg")
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=60)
    wait_until(lambda: not alive(ffmpeg), timeout=10, what="ffmpeg to die with its parent")
    assert sha256_file(output) == before
    if signum == signal.SIGKILL:  # no chance to clean up: the next stitch removes the dead process's partial
        assert proc.returncode == -signal.SIGKILL
        video.stitch(slow_frames, tmp_path / "other.mp4", fps=4)
    else:
        assert proc.returncode == {signal.SIGINT: 130, signal.SIGTERM: 143}[signum]
        assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1
        assert "the earlier video, if any, is untouched" in stderr
    assert leftovers(tmp_path) == []


@pytest.mark.slow
def test_sigterm_stops_a_render_as_ctrl_c_does(tmp_path):
    from test_cli import assert_only_whole_frames, wait_for_frames

    out = tmp_path / "o"
    proc = subprocess.Popen([*ttlesson_command(), "render", "worlds-fair", "--model", "tiny", "--size", "64",
                             "--steps", "20", "--out", str(out), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_frames(out, 1, proc, timeout=900)  # generous: the machine running the suite may be busy
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "stopped (SIGTERM); finished frames are kept" in stderr
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1
    assert_only_whole_frames(out)
    assert leftovers(out) == []
    with folder_lock(out, "the lock went with the process"):
        pass


@pytest.mark.slow
def test_two_stitches_at_once_use_their_own_partials(slow_frames, tmp_path):
    procs = [subprocess.Popen([*ttlesson_command(), "stitch", str(slow_frames), "--output", str(tmp_path / "same.mp4"),
                               "--fps", "4"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    for proc in procs:
        assert proc.wait(timeout=120) == 0, proc.stderr.read()
    assert video.probe(tmp_path / "same.mp4").frames == 6 and leftovers(tmp_path) == []


# --- data loss: exact frame arithmetic for every accepted --fps/--crossfade pair ------------------------------

FPS = [0.1, 0.5, 1, 2, 2.5, 3, 4, 5, 7, 12, 12.5, 24, 29.97, 120]
CROSSFADES = [0, 0.05, 0.1, 0.125, 0.2, 0.25, 0.3, 0.333, 0.5, 1, 2.5, 5]


@pytest.mark.slow
def test_every_accepted_fps_crossfade_pair_gives_the_exact_video(tmp_path):
    for count in (1, 3):
        for index in range(count):
            folder = tmp_path / f"f{count}" / "frames"
            folder.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (32, 24), (70 * index, 90, 160)).save(folder / f"frame_{index:03d}.png")
    accepted = refused = 0
    for fps in FPS:
        for crossfade in CROSSFADES:
            try:
                timing = video.plan_timing(fps, crossfade)
            except VideoError as err:
                refused += 1
                message = str(err)
                assert "\n" not in message and (f"--fps {fps:g}" in message or "--fps 12 or less" in message)
                suggested = message.split("give --crossfade ")[1].split(", or 0")[0] if "give --crossfade " in \
                    message and "or 0 for cuts" in message else None
                for value in (suggested.split(" or ") if suggested else []):
                    video.plan_timing(fps, float(value))  # the values the message names do work
                continue
            accepted += 1
            three = timing.for_stills(3)
            assert three.frames == 3 * timing.per_still and three.duration == pytest.approx(3 / fps)
            for count in (1, 3) if crossfade else (3,):
                info = video.stitch(tmp_path / f"f{count}" / "frames", tmp_path / "out.mp4", fps=fps,
                                    crossfade=crossfade)
                assert info.frames == timing.for_stills(count).frames, (fps, crossfade, count)
                assert info.duration == pytest.approx(count / fps, abs=0.5 / info.fps + 0.005), (fps, crossfade)
    assert accepted >= 40 and refused >= 40  # the grid covers both sides


# --- data loss: --output never overwrites what it must not ------------------------------------------------

def test_output_refuses_inputs_other_files_and_folders_but_replaces_its_own_video(small_render, tmp_path):
    folder = copy_of(small_render, tmp_path)
    notes = tmp_path / "notes.mp4"
    notes.write_text("my notes, not a video")
    plain = tmp_path / "holiday.mp4"  # a video the user made themselves, with plain ffmpeg
    subprocess.run([video.find_ffmpeg(), "-v", "error", "-f", "lavfi", "-i", "color=red:s=32x32:d=0.2",
                    "-pix_fmt", "yuv420p", str(plain)], check=True)
    (tmp_path / "a folder.mp4").mkdir()
    before = snapshot(tmp_path)
    cases = {
        folder / "frames" / "frame_001.png": "is a .png file",
        folder / "manifest.json": "is a .json file",
        folder / "frames": "is a folder",
        tmp_path / "a folder.mp4": "is a folder",
        folder / "film.gif": "is a .gif file, which cannot hold the H.264 video",
        folder / "film": "is a name without an extension",
        folder / "frames" / "film.mp4": "is among the frames the video is made from",
        notes: "already exists and is not a video ttlesson made",
        plain: "already exists and is not a video ttlesson made",
    }
    for output, expected in cases.items():
        assert expected in one_line_error(call_cli("stitch", folder, "--output", output)), output
    assert snapshot(tmp_path) == before
    # Its own videos are replaced: the render folder's default, and one ttlesson wrote elsewhere before.
    first = video.stitch(folder, tmp_path / "elsewhere.mkv")
    assert video.stitch(folder, tmp_path / "elsewhere.mkv", fps=3).frames == 3 and first.path.suffix == ".mkv"
    assert call_cli("stitch", folder).returncode == 0 and call_cli("stitch", folder, "--fps", "1").returncode == 0
    assert video.probe(folder / "harbour.mp4").duration == pytest.approx(3.0, abs=0.05)


# --- data loss: stitch and verify trust the manifest, not the folder ----------------------------------------

def test_stitch_and_verify_check_every_frame_against_the_manifest(small_render, tmp_path):
    folder = copy_of(small_render, tmp_path)
    frames = folder / "frames"
    Image.new("RGB", (64, 64), "red").save(frames / "frame_003.png")  # a stray extra frame: never stitched in
    assert video.stitch(folder).frames == 3
    damages = {
        "missing": (lambda p: p.unlink(), "frame_001.png is missing; run the same ttlesson render command again"),
        "truncated": (lambda p: p.write_bytes(p.read_bytes()[:200]), "frame_001.png was changed after ttlesson"),
        "a JPEG": (lambda p: Image.new("RGB", (64, 64)).save(p, format="JPEG"), "frame_001.png was changed"),
    }
    for name, (damage, expected) in damages.items():
        victim = copy_of(small_render, tmp_path / name)
        damage(victim / "frames" / "frame_001.png")
        with pytest.raises(FrameCheckError, match=expected):
            video.stitch(victim)
        assert not (victim / "harbour.mp4").exists()
        line = one_line_error(call_cli("verify", victim))
        assert expected.split(";")[0] in line and ("delete it" in line or "missing" in line)
        shown = call_cli("verify", victim).stdout
        assert "(frames 0, 2)" in shown and "missing or changed on disk (frames 1)" in shown


# --- data loss: one render per folder at a time -------------------------------------------------------------

@pytest.mark.slow
def test_a_second_render_into_a_busy_folder_names_the_first_and_exits_2(tmp_path, tiny_backend):
    board = tmp_path / "board.json"
    BOARD.save(board)
    out = tmp_path / "o"
    first = subprocess.Popen([*ttlesson_command(), "render", str(board), "--model", "tiny", "--size", "64",
                              "--steps", "999", "--out", str(out), "--quiet"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_until(lambda: manifest.manifest_path(out).exists() or first.poll() is not None, timeout=900,
               what="the first render to load its model")
    assert first.poll() is None, first.communicate()
    second = call_cli("render", board, "--model", "tiny", "--size", "64", "--steps", "2", "--out", out)
    line = one_line_error(second)
    assert f"{out} is in use by process {first.pid} (ttlesson render {board}" in line
    assert "wait for that render to finish" in line
    with pytest.raises(FolderBusyError, match=f"process {first.pid}"):
        render(BOARD, out, **SMALL)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    # The kernel dropped the dead run's lock: the next run goes ahead, and its frames carry its own settings.
    result = render(BOARD, out, overwrite=True, backend=tiny_backend, **SMALL)
    assert sorted(result.manifest.frames) == [0, 1, 2]
    assert {record.steps for record in manifest.load(out).frames.values()} == {2}


# --- data loss: a manifest is checked before anything trusts it ---------------------------------------------

MANIFEST_DAMAGE = {
    "storyboard escapes": (lambda d: d.update(storyboard="../../escaped"), None),
    "a billion frames": (lambda d: d.update(frame_count=10 ** 9), 'key "frame_count" must be a whole number'),
    "index as text": (lambda d: d["frames"][0].update(index="0"), 'key "frames[0].index" must be a whole number'),
    "null entry": (lambda d: d["frames"].__setitem__(1, None), 'key "frames[1]" must be an object, not null'),
    "null seed": (lambda d: d["frames"][0].update(seed=None), 'key "frames[0].seed" must be a whole number'),
    "null count": (lambda d: d.update(frame_count=None), 'key "frame_count" must be a whole number'),
    "frames an object": (lambda d: d.update(frames={}), 'key "frames" must be a list'),
    "repeated index": (lambda d: d["frames"][1].update(index=0), 'key "frames[1].index" repeats frame 0'),
    "index past the end": (lambda d: d["frames"][1].update(index=7), 'key "frames[1].index" is 7, beyond'),
    "newer schema": (lambda d: d.update(schema=9), "it uses schema 9, newer than this ttlesson reads (1); upgrade"),
    "not an object": (lambda d: d.clear() or d.update(x=1), 'key "frame_count" is missing'),
}


@pytest.mark.parametrize("case", MANIFEST_DAMAGE, ids=list(MANIFEST_DAMAGE))
def test_a_damaged_manifest_is_one_sentence_naming_the_key(small_render, tmp_path, case):
    folder = copy_of(small_render, tmp_path)
    path = manifest.manifest_path(folder)
    data = json.loads(path.read_text())
    damage, expected = MANIFEST_DAMAGE[case]
    damage(data)
    path.write_text(json.dumps(data))
    if expected is None:  # a name from the manifest never becomes a path outside the folder
        info = video.stitch(folder)
        assert info.path == folder / "escaped.mp4" and not list(tmp_path.glob("escaped*"))
        return
    started = time.monotonic()
    line = one_line_error(call_cli("stitch", folder))
    assert f"{path} is not a manifest ttlesson can read: {expected}" in line and time.monotonic() - started < 60
    with pytest.raises(TTLessonError, match="move it away and render again|upgrade ttlesson"):
        render(BOARD, folder, **SMALL)


# --- data loss: workers end with their parent ---------------------------------------------------------------

def processes_with(marker: str) -> list[int]:
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:
            continue
        if marker.encode() in environ.split(b"\0") and alive(int(entry)):
            found.append(int(entry))
    return found


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to find the workers")
def test_workers_die_when_their_render_is_killed(tmp_path):
    marker = f"TTLESSON_TEST_RUN={tmp_path.name}"
    proc = subprocess.Popen([*ttlesson_command(), "render", "worlds-fair", "--model", "tiny", "--device", "cpu",
                             "--size", "64", "--steps", "200", "--devices", "2", "--out", str(tmp_path / "o"),
                             "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TTLESSON_TEST_RUN": tmp_path.name})
    # The manifest is written once both workers have loaded the model: they are busy when the parent dies.
    wait_until(lambda: manifest.manifest_path(tmp_path / "o").exists() or proc.poll() is not None, timeout=900,
               what="the workers to load the model")
    assert proc.poll() is None, proc.communicate()
    workers = [pid for pid in processes_with(marker) if pid != proc.pid]
    assert len(workers) >= 2, workers
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    wait_until(lambda: not processes_with(marker), timeout=20, what="the workers to exit")


# --- tracebacks: output paths checked before the model loads ------------------------------------------------

def _loop(t: Path) -> Path:
    (t / "loop").mkdir()
    (t / "loop" / "frames").symlink_to("frames")
    return t / "loop"


def _frames_file(t: Path) -> Path:
    (t / "ff").mkdir()
    (t / "ff" / "frames").write_text("not a folder")
    return t / "ff"


def _manifest_folder(t: Path) -> Path:
    (t / "mf" / "manifest.json").mkdir(parents=True)
    return t / "mf"


def _a_file(t: Path) -> Path:
    (t / "afile").write_text("x")
    return t / "afile"


BAD_OUT = {
    "a file": (_a_file, "is a file, not a folder"),
    "under a file": (lambda t: _a_file(t) / "out", "is a file, not a folder"),
    "/proc": (lambda t: Path("/proc/ttlesson-out"), "is inside /proc, a view of the running system"),
    "/sys": (lambda t: Path("/sys/ttlesson-out"), "is inside /sys, a view of the running system"),
    "frames a file": (_frames_file, "frames is a file where ttlesson keeps the frames folder"),
    "frames a link loop": (_loop, "frames is a symbolic link that leads nowhere (or to itself)"),
    "manifest a folder": (_manifest_folder, "manifest.json is a folder"),
}


@pytest.mark.parametrize("case", BAD_OUT, ids=list(BAD_OUT))
def test_a_bad_output_folder_is_refused_before_the_model_loads(tmp_path, case):
    arrange, expected = BAD_OUT[case]
    out = arrange(tmp_path)
    before = snapshot(tmp_path)
    started = time.monotonic()
    proc = call_cli("render", "worlds-fair", "--model", "tiny", "--out", out, "--quiet")
    assert expected in one_line_error(proc)
    assert snapshot(tmp_path) == before and time.monotonic() - started < 60


def test_read_only_and_full_disks(small_render, tmp_path):
    with tmpfs(tmp_path / "ro", "1m", read_only=True) as read_only:
        assert "is on a read-only file system" in one_line_error(
            call_cli("render", "worlds-fair", "--model", "tiny", "--out", read_only / "o"))
        assert "is on a read-only file system" in one_line_error(
            call_cli("stitch", small_render, "--output", read_only / "v.mp4"))
    with tmpfs(tmp_path / "small", "256k") as small:
        line = one_line_error(call_cli("render", "worlds-fair", "--model", "tiny", "--out", small / "o"))
        assert "is on a disk with" in line and "free, and this needs about" in line
    with tmpfs(tmp_path / "full", "2m") as full:
        old = video.stitch(small_render, full / "film.mp4")
        before = sha256_file(old.path)
        filler = fill(full, leave=4096)  # room for a test write, not for a video
        line = one_line_error(call_cli("stitch", small_render, "--output", full / "film.mp4", "--fps", "3"))
        assert "the disk holding" in line and "is full" in line
        assert sha256_file(full / "film.mp4") == before and leftovers(full) == []
        filler.unlink()


def test_a_disk_that_fills_up_during_a_render_keeps_the_frames_made(tmp_path, tiny_backend):
    with tmpfs(tmp_path / "disk", "2m") as disk:
        out = disk / "o"
        filled = []

        def fill_after_the_first_frame(event):
            if isinstance(event, FrameDone) and not filled:
                filled.append(fill(disk))

        with pytest.raises(TTLessonError, match=r"Frame 1 could not be saved: the disk holding .* is full; .*\(the 1 "
                                                 r"frames made before it are saved; run the same command again"):
            render(BOARD, out, backend=tiny_backend, on_event=fill_after_the_first_frame, **SMALL)
        book = manifest.load(out)
        assert sorted(book.frames) == [0] and manifest.check_frames(out, book) == []
        assert leftovers(out) == []
        filled[0].unlink()
        again = render(BOARD, out, backend=tiny_backend, **SMALL)
        assert again.kept == [0] and again.made == [1, 2]


# --- tracebacks: inputs -------------------------------------------------------------------------------------

def test_deep_json_and_huge_numbers_are_one_sentence(tmp_path, small_render):
    deep = "[" * 100_000 + "]" * 100_000
    (tmp_path / "deep.json").write_text(deep)
    assert "nested too deeply" in one_line_error(call_cli("render", tmp_path / "deep.json", "--out", tmp_path / "o"))
    folder = copy_of(small_render, tmp_path)
    manifest.manifest_path(folder).write_text('{"frames": ' + deep + "}")
    assert "its JSON is nested too deeply" in one_line_error(call_cli("stitch", folder))
    (tmp_path / "snap.json").write_text('{"device_info": ' + deep + "}")
    assert "nested too deeply to be a tt-smi snapshot" in one_line_error(
        call_cli("detect", "--tt-smi-snapshot", tmp_path / "snap.json"))
    digits = "9" * 5000
    (tmp_path / "seed.json").write_text(f'[{{"prompt": "a", "seed": {digits}}}]')
    line = one_line_error(call_cli("render", tmp_path / "seed.json", "--out", tmp_path / "o"))
    assert "seed.json" in line and "0 to 4294967295" in line  # 3.11+ refuses the digits; 3.10 reads, then refuses
    line = one_line_error(call_cli("render", "worlds-fair", "--out", tmp_path / "o", "--seed", digits))
    assert "is not a whole number from 0 to 4294967295" in line and len(line) < 200
    with pytest.raises(TTLessonError, match="Seed a 5001-digit number is out of range"):
        render(BOARD, tmp_path / "o", model="tiny", seed=10 ** 5000)


@pytest.mark.parametrize("index,expected", [
    ('{"_class_name": ', "model_index.json is not valid JSON"),
    ("[1, 2]", "model_index.json is not a JSON object"),
    ('{"_class_name": "StableDiffusionPipeline"}', "model_index.json lists no unet or transformer component"),
    ('{"_class_name": 5, "unet": ["diffusers", "UNet2DConditionModel"]}', 'has no "_class_name"'),
    ('{"_class_name": "X", "unet": ["diffusers", "U"], "vae": ["diffusers", "V"], "scheduler": ["diffusers", "S"]}',
     "lists a unet component but the folder has no unet/ subfolder"),
])
def test_a_broken_model_folder_is_one_sentence(tmp_path, index, expected):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model_index.json").write_text(index)
    assert expected in one_line_error(call_cli("render", "worlds-fair", "--model", tmp_path / "model", "--out",
                                              tmp_path / "o"))


def test_a_size_too_big_for_memory_is_refused_with_the_largest_that_fits(tmp_path):
    line = one_line_error(call_cli("render", "worlds-fair", "--model", "sd14", "--backend", "torch", "--device", "cpu",
                                  "--size", "8192", "--out", tmp_path / "o"))
    assert "Size 8192x8192 needs about" in line and "GiB of memory for sd14 on the CPU" in line
    assert "give --size" in line or "even 64x64 does not fit" in line
    assert not (tmp_path / "o").exists()


def test_import_demo_bad_steps_and_a_folder_named_like_a_png(tmp_path):
    demo = tmp_path / "demo"
    (demo / "input_data_2_512x512_ttnn.png").mkdir(parents=True)
    Image.new("RGB", (512, 512)).save(demo / "input_data_1_512x512_ttnn.png")
    assert "--steps -5 is out of range" in one_line_error(call_cli("import-demo", demo, "--out", tmp_path / "o",
                                                                   "--steps", "-5"))
    proc = call_cli("import-demo", demo, "--out", tmp_path / "o")
    assert proc.returncode == 0 and "1 demo images" in proc.stdout


# --- tracebacks: the environment ----------------------------------------------------------------------------

@pytest.mark.slow
def test_an_unreadable_hugging_face_home_is_a_failed_doctor_line(tmp_path):
    (tmp_path / "hf-file").write_text("not a folder")
    (tmp_path / "hf-dir" / "token").mkdir(parents=True)
    for home, expected in ((tmp_path / "hf-file", "is a file, not a folder"),
                           (tmp_path / "hf-dir", "is a folder where a file belongs")):
        proc = run_cli("doctor", env={"HF_HOME": str(home)})
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        (line,) = [line for line in proc.stdout.splitlines() if line.startswith("[fail] Hugging Face:")]
        assert expected in line
        status = run_cli("auth", "status", env={"HF_HOME": str(home)})
        assert status.returncode == 0 and "The Hugging Face login cannot be read" in status.stdout


@pytest.mark.parametrize("variable,value,expected", [
    ("TTLESSON_STEPS", "²", "TTLESSON_STEPS='²' is not a whole number of steps"),
    ("TTLESSON_STEPS", "9" * 5000, "is not a whole number of steps from 1 to 1000"),
    ("TTLESSON_SIZE", "-5", "TTLESSON_SIZE='-5' is not a frame size"),
    ("TTLESSON_BACKEND", "gpu", "TTLESSON_BACKEND='gpu' is not a backend"),
    ("TTLESSON_MODEL", "sd99", "TTLESSON_MODEL='sd99' is neither a model ttlesson knows"),
    ("TTLESSON_WORKDIR", "FILE", "names a file, not a folder"),
])
@pytest.mark.slow
def test_invalid_ttlesson_settings_stop_lesson_start_with_one_sentence(tmp_path, variable, value, expected):
    if value == "FILE":
        value = str(tmp_path / "file")
        Path(value).write_text("x")
    code = "from ttlesson.notebook import lesson\ntry:\n    lesson.start()\nexcept Exception as e:\n" \
           "    print(type(e).__name__, e)\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ,
                                                                                         variable: value})
    assert proc.stdout.startswith("TTLessonError ") and expected in proc.stdout
    assert proc.stdout.count("\n") == 1 and "or unset it" in proc.stdout


@pytest.mark.slow
def test_closed_pipes_end_quietly():
    for command in (["detect"], ["doctor"], ["--help"], ["detect", "--json"], ["auth", "status"]):
        read, write = os.pipe()
        os.close(read)  # the reader is gone before the first line, as with `| head -0`
        proc = subprocess.run([*ttlesson_command(), *command], stdout=write, stderr=subprocess.PIPE, text=True,
                              timeout=120)
        os.close(write)
        assert "Traceback" not in proc.stderr and proc.stderr == "", (command, proc.stderr)
        assert proc.returncode in (0, 1, 141), command


# --- tracebacks: the Python API -----------------------------------------------------------------------------

def test_numpy_numbers_are_accepted_and_wrong_types_named(tmp_path, tiny_backend):
    result = render(BOARD, tmp_path / "np", model="tiny", backend=tiny_backend, steps=np.int64(2),
                    seed=np.int64(3), guidance=np.float32(7.5), size=np.int64(64), devices=np.int64(1))
    assert result.manifest.frames[0].seed == 3 and type(result.manifest.frames[0].steps) is int
    info = video.stitch(tmp_path / "np", fps=np.float64(2), crf=np.int64(18), crossfade=np.float32(0.25))
    assert info.frames == 36
    for kwargs, name in (({"steps": "4"}, "steps="), ({"guidance": "7"}, "guidance="), ({"seed": 1.5}, "seed="),
                         ({"size": 64.0}, "Size 64.0"), ({"devices": 1.5}, "Devices 1.5"),
                         ({"out_dir": 5}, "out_dir="), ({"model": 14}, "model=")):
        arguments = {"model": "tiny", "out_dir": tmp_path / "x", **kwargs}
        with pytest.raises(TTLessonError, match=name):
            render(BOARD, **arguments)
    for kwargs, name in (({"fps": "2"}, "fps="), ({"crf": 18.0}, "crf="), ({"crossfade": [1]}, "crossfade=")):
        with pytest.raises(VideoError, match=name):
            video.stitch(tmp_path / "np", **kwargs)
    assert not (tmp_path / "x").exists()


# --- misleading messages, and every argument checked before work ---------------------------------------------

def test_video_checks_stitch_arguments_before_rendering(tmp_path):
    for extra, expected in ((["--fps", "0"], "--fps 0 is out of range"), (["--fps", "0.01"], "--fps 0.01 is out"),
                            (["--crf", "99"], "--crf 99 is out of range"),
                            (["--fps", "3", "--crossfade", "0.2"], "give --crossfade 0.167 or 0.333"),
                            (["--fps", "24", "--crossfade", "0.041667"], "--crossfade needs --fps 12 or less"),
                            (["--output", str(tmp_path / "x.gif")], "is a .gif file"),
                            (["--output", str(tmp_path)], "is a folder")):
        started = time.monotonic()
        line = one_line_error(call_cli("video", "worlds-fair", "--model", "tiny", "--out", tmp_path / "o", *extra))
        assert expected in line and time.monotonic() - started < 60
        assert not (tmp_path / "o").exists()


def test_storyboard_names_and_extensions(tmp_path, monkeypatch):
    (tmp_path / "board.yaml").write_text("frames:\n  - prompt: a harbour\n")
    line = one_line_error(call_cli("render", tmp_path / "board.yaml", "--out", tmp_path / "o"))
    assert "not .yaml; save it in one of those forms" in line
    (tmp_path / "plain").write_text('[{"prompt": "a harbour", "seed": 5}]')
    assert storyboard.load(tmp_path / "plain")[0].seed == 5  # no extension: JSON by its first character
    (tmp_path / "lines").write_text("a harbour\n# a comment\na pier\n")
    assert storyboard.load(tmp_path / "lines").prompts == ["a harbour", "a pier"]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "worlds-fair").mkdir()  # e.g. the --out folder of an earlier run
    assert len(storyboard.load("worlds-fair")) == 10 and storyboard.load("worlds-fair").name == "worlds-fair"


def test_snapshot_report_describes_the_snapshot_not_this_machine(tmp_path):
    from machine_helpers import make_snapshot, n300_entries

    snapshot_file = make_snapshot(tmp_path / "snap.json", n300_entries(1))
    proc = call_cli("detect", "--tt-smi-snapshot", snapshot_file)
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith(f"The tt-smi snapshot {snapshot_file} describes a machine where frames would be made "
                           "on Tenstorrent hardware") and "this machine's own cards were not examined" in last


def test_check_tt_without_a_device_gives_its_own_advice(tmp_path):
    line = one_line_error(call_cli("check-tt", "--out", tmp_path))
    assert "check-tt tests a Tenstorrent chip" in line and "ttlesson render --backend torch" in line


def test_stitch_returns_the_ffmpeg_command_it_ran(small_render, tmp_path):
    import shlex

    info = video.stitch(small_render, tmp_path / "film.mp4", fps=4)
    assert info.command[0] == video.find_ffmpeg() and info.command_line == shlex.join(info.command)
    assert str(small_render / "frames" / "frame_%03d.png") in info.command
    assert "-frames:v" in info.command and info.command[info.command.index("-frames:v") + 1] == "3"
    partial = Path(info.command[-2])  # ffmpeg's output: the partial that became film.mp4 once checked
    assert partial.parent == tmp_path and ".partial" in partial.name and not partial.exists()
    rerun = [part if part != str(partial) else str(tmp_path / "again.mp4") for part in info.command]
    subprocess.run(rerun, check=True, capture_output=True)
    again = video.probe(tmp_path / "again.mp4")
    assert (again.frames, again.width, again.fps) == (info.frames, info.width, info.fps)
