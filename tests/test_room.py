"""Around the render: what a workshop room shares. Two kernels saving the same storyboard at once; a model fetched
once (from a local stand-in for the Hub, tests/hub_standin.py) and read by the room offline from a read-only
cache."""

from __future__ import annotations

import getpass
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import call_cli, one_line_error, ttlesson_command
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ttlesson import storyboard
from ttlesson.errors import TTLessonError

ADDER = """
import sys
from ttlesson import storyboard
from ttlesson.errors import TTLessonError
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


# --- ttlesson fetch: the model fetched once, read by the room offline -----------------------------------------

SD14 = "CompVis/stable-diffusion-v1-4"
SD35 = "stabilityai/stable-diffusion-3.5-large"
UNET = "unet/diffusion_pytorch_model.safetensors"


@pytest.fixture(scope="module")
def hub():
    """The Hub stand-in serving the tiny model's files as SD 1.4's repository (and as a gated SD 3.5's)."""
    from hub_standin import HubStandIn

    from ttlesson.models.tiny import tiny_model_folder

    repo = tiny_model_folder()
    with HubStandIn({SD14: repo, SD35: repo}, gated=(SD35,), slow=(UNET,)) as stand_in:
        yield stand_in


def hub_env(hub, home: Path, **more) -> dict:
    return {**os.environ, "HF_ENDPOINT": hub.url, "HF_HOME": str(home), "HF_HUB_OFFLINE": "0", "HF_TOKEN": "",
            "HF_HUB_DISABLE_TELEMETRY": "1", **more}


def _size(path: Path) -> int:
    """A download's size now, 0 if it finished (and was renamed) since it was listed."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


@pytest.fixture(scope="module")
def fetched(hub, tmp_path_factory):
    """``ttlesson fetch sd14`` killed mid-way through the UNet, then run again: the instructor's cache, and what
    each run asked the Hub for."""
    home = tmp_path_factory.mktemp("instructor") / "hf"
    env = hub_env(hub, home)
    first = subprocess.Popen([*ttlesson_command(), "fetch", "sd14"], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    blobs = home / "hub" / "models--CompVis--stable-diffusion-v1-4" / "blobs"
    deadline = time.monotonic() + 120
    while not any(_size(path) > 1024 ** 2 for path in blobs.glob("*.incomplete")):
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()
        time.sleep(0.05)
    first.kill()  # mid-way through the 16 MB UNet
    first.communicate()
    kept = {path.name for path in blobs.iterdir() if not path.name.endswith(".incomplete")}
    asked_before = len(hub.gets)
    again = subprocess.run([*ttlesson_command(), "fetch", "sd14"], env=env, capture_output=True, text=True,
                           timeout=300, stdin=subprocess.DEVNULL)
    return home, blobs, kept, {name for name, _ in hub.gets[asked_before:]}, again


def test_fetch_downloads_every_file_checked_and_keeps_what_a_killed_fetch_finished(fetched):
    _, blobs, kept, asked_again, again = fetched
    assert again.returncode == 0, again.stderr
    assert "12 files" in again.stdout and "(12 of 12)" in again.stdout and "HF_HUB_OFFLINE=1" in again.stdout
    assert "Fetching 12 files" in again.stderr  # huggingface_hub's own progress
    # Whole files are kept; the file cut short is fetched again (huggingface_hub 1.x and later download each
    # file to a temporary file of its own process), and what the killed run left of it is removed.
    assert kept and UNET in asked_again and len(asked_again) <= 12 - len(kept)
    assert not list(blobs.glob("*.incomplete"))
    assert "Traceback" not in again.stderr and "hf_" not in again.stdout + again.stderr


def test_fetch_of_a_gated_model_without_a_token_is_one_sentence(hub, tmp_path):
    proc = subprocess.run([*ttlesson_command(), "fetch", "sd35-large"], env=hub_env(hub, tmp_path / "hf"),
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    message = one_line_error(proc)
    assert "is gated" in message and "ttlesson auth login" in message


def test_fetch_says_what_it_cannot_fetch():
    from ttlesson.models.tiny import tiny_model_folder

    assert "a folder already here" in one_line_error(call_cli("fetch", tiny_model_folder()))
    assert "HF_HUB_OFFLINE is set" in one_line_error(call_cli("fetch", "sd14", env={"HF_HUB_OFFLINE": "1"}))


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="a read-only bind mount needs root")
def test_the_room_renders_from_a_read_only_cache_offline(fetched, tmp_path):
    """The instructor fetched once; an attendee whose cache is mounted read-only (EROFS even for root) renders
    with HF_HUB_OFFLINE=1, and nothing in the cache changes."""
    home, *_, again = fetched
    assert again.returncode == 0, again.stderr
    cache = home / "hub"
    board = tmp_path / "two.txt"
    board.write_text("a fair at dawn\na fair at dusk\n")
    before = sorted((str(path), path.lstat().st_mtime_ns) for path in cache.rglob("*"))
    render = " ".join(shlex.quote(part) for part in [*ttlesson_command(), "render", str(board), "--model", "sd14",
                                                     "--steps", "1", "--size", "64", "--out", str(tmp_path / "out"),
                                                     "--quiet"])
    script = (f"mount --bind {shlex.quote(str(cache))} {shlex.quote(str(cache))} && "
              f"mount -o remount,ro,bind {shlex.quote(str(cache))} && touch {shlex.quote(str(cache))}/x 2>/dev/null "
              f"&& exit 9; exec {render}")
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HOME": str(tmp_path / "attendee-hf"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script], env=env,
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    assert len(list((tmp_path / "out" / "frames").glob("frame_*.png"))) == 2
    assert sorted((str(path), path.lstat().st_mtime_ns) for path in cache.rglob("*")) == before


# --- the room file: the instructor's settings for every attendee ----------------------------------------------

def write_room(path: Path, **values) -> Path:
    path.write_text(json.dumps(values))
    return path


def test_the_room_file_sets_what_the_environment_does_not(tmp_path, monkeypatch):
    from ttlesson.notebook import settings

    room = write_room(tmp_path / "room.json", model="tiny", steps=3, size=64, workdir=str(tmp_path / "{user}"))
    monkeypatch.setenv("TTLESSON_ROOM", str(room))
    monkeypatch.setenv("TTLESSON_STEPS", "5")  # an attendee's own variable wins
    for name in ("TTLESSON_MODEL", "TTLESSON_SIZE", "TTLESSON_WORKDIR", "TTLESSON_SERVER"):
        monkeypatch.delenv(name, raising=False)
    cfg = settings.current()
    assert (cfg.model.value, cfg.steps.value, cfg.size.value) == ("tiny", 5, "64")
    assert cfg.model.source == f"room file ({room})" and cfg.steps.source == "environment (TTLESSON_STEPS)"
    assert cfg.workdir_path == tmp_path / getpass.getuser()


def test_heavy_cells_are_the_instructors_demo_and_the_cost_is_said_first(tmp_path, monkeypatch, capsys):
    from ttlesson.notebook import lesson, next_steps, settings

    room = write_room(tmp_path / "room.json", model="tiny", workdir=str(tmp_path / "work"),
                      film={"keyframes": 2, "transition_frames": 1}, instructor_only=["scaling", "sd35"])
    monkeypatch.setenv("TTLESSON_ROOM", str(room))
    monkeypatch.setenv("TTLESSON_CACHE", str(tmp_path / "cache"))  # no measurement of the instructor's to show
    for name in ("TTLESSON_MODEL", "TTLESSON_WORKDIR", "TTLESSON_STEPS", "TTLESSON_SIZE", "TTLESSON_INSTRUCTOR"):
        monkeypatch.delenv(name, raising=False)
    cfg = lesson.start(step=6)
    assert "This notebook makes up to 8 frames" in capsys.readouterr().out  # 2 + 2 × (2 + 1 × 1)
    assert lesson.step_cost(cfg, 8) is None and lesson.step_cost(cfg, 10) is None
    assert "instructor's demo" in lesson.measure_scaling(cfg).verdict
    assert "instructor's demo" in str(lesson.try_sd35(cfg))
    monkeypatch.setenv("TTLESSON_INSTRUCTOR", "1")
    assert lesson.step_cost(settings.current(), 10) is None  # no machine here that SD 3.5 Large runs on
    # a STAND-IN plan: the instructor's machine as if it were a T3K, which this machine is not
    monkeypatch.setattr(next_steps, "sd35_plan", lambda report=None: next_steps.SD35Plan(True, "a T3K (stand-in)"))
    assert lesson.step_cost(settings.current(), 10) == "This notebook makes up to 2 frames, after downloading " \
        "sd35-large (about 27 GB, once, into the Hugging Face cache): the time per frame shows with the first frame " \
        "(none made with these settings here yet)."


@settings(max_examples=300, deadline=None)
@given(data=st.recursive(st.none() | st.booleans() | st.integers(-5, 50) | st.text(max_size=12),
                         lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
                             st.sampled_from(["model", "steps", "size", "film", "keyframes", "transition_frames",
                                              "instructor_only", "workdir", "server", "x"]), inner, max_size=4),
                         max_leaves=8))
@example(data={"instructor_only": [[]]})  # a list in the list: once a TypeError
def test_a_room_file_is_read_or_refused_in_one_sentence(data):
    from ttlesson.notebook import room

    try:
        parsed = room.parse(data, Path("room.json"))
    except TTLessonError as err:
        assert str(err).startswith("TTLESSON_ROOM file room.json") and "\n" not in str(err)
        return
    assert set(parsed.settings) <= set(room.SETTING_KEYS) and 1 <= parsed.film_keyframes <= room.MAX_FILM_KEYFRAMES


# --- a simulated room: three attendees at once ----------------------------------------------------------------

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
ROOM_NOTEBOOKS = ("03_video_prompts.ipynb", "04_generate_frames.ipynb", "06_stitch_video.ipynb")


def one_sitting(notebooks: list[Path], path: Path) -> Path:
    """The notebooks' cells one after another in one notebook: an attendee working through the steps in one
    kernel (each step's first cell starts it again, as opening the next notebook does)."""
    import nbformat

    parts = [nbformat.read(notebook, as_version=4) for notebook in notebooks]
    joined = parts[0]
    for part in parts[1:]:
        joined.cells.extend(part.cells)
    for number, cell in enumerate(joined.cells):
        cell.id = f"cell-{number}"
    nbformat.write(joined, path)
    return path


# The notebook run top to bottom in a kernel of its own, which talks over Unix sockets named by argv[2]: three
# kernels started at once over TCP pick their ports in a race, and one lost it on a loaded machine ("Kernel died
# before replying to kernel_info").
RUN_NOTEBOOK = """
import sys
import nbformat
from jupyter_client import KernelManager
from nbclient import NotebookClient

notebook = nbformat.read(sys.argv[1], as_version=4)
NotebookClient(notebook, km=KernelManager(kernel_name="python3", transport="ipc", ip=sys.argv[2]),
               timeout=600, startup_timeout=300).execute()
"""


def attendee_script(cache: Path, notebook: Path, sockets: Path) -> str:
    """A shell line for one attendee: the shared cache read-only (a bind mount in a mount namespace of its own,
    so EROFS even for root), then the notebook run top to bottom in a kernel (nbclient), its sockets named by
    ``sockets``."""
    execute = shlex.join([sys.executable, "-c", RUN_NOTEBOOK, str(notebook), str(sockets)])
    quoted = shlex.quote(str(cache))
    return f"mount --bind {quoted} {quoted} && mount -o remount,ro,bind {quoted} && exec {execute}"


def snapshot(folder: Path) -> list[tuple[str, int, int]]:
    return sorted((str(path), path.lstat().st_size, path.lstat().st_mtime_ns) for path in folder.rglob("*"))


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="a read-only bind mount needs root")
def test_a_room_of_three_runs_notebooks_at_once_from_a_read_only_cache_and_the_reel_collects_them(tmp_path):
    from ttlesson.env import VIDEO_FILE
    from ttlesson.video import probe

    cache = tmp_path / "shared-cache"
    built = subprocess.run([*ttlesson_command(), "fetch", "tiny"], env={**os.environ, "TTLESSON_CACHE": str(cache)},
                           capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert built.returncode == 0, built.stderr
    room = write_room(tmp_path / "room.json", model="tiny", steps=1, size=64,
                      film={"keyframes": 2, "transition_frames": 1}, instructor_only=["scaling", "sd35"])
    before = snapshot(cache)
    attendees = {name: tmp_path / "room" / name for name in ("ada", "bo", "cy")}
    sitting = one_sitting([NOTEBOOKS / name for name in ROOM_NOTEBOOKS], tmp_path / "steps-3-4-6.ipynb")
    (tmp_path / "kernels").mkdir()
    runs = {name: subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c",
                                    attendee_script(cache, sitting, tmp_path / "kernels" / name)],
                                   env={**os.environ, "TTLESSON_ROOM": str(room), "TTLESSON_CACHE": str(cache),
                                        "TTLESSON_WORKDIR": str(folder), "HF_HUB_OFFLINE": "1",
                                        "HF_HOME": str(tmp_path / "hf-nothing"), "TTLESSON_MODEL": "",
                                        "TTLESSON_STEPS": "", "TTLESSON_SIZE": ""},
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=NOTEBOOKS)
            for name, folder in attendees.items()}
    for name, run in runs.items():
        _, err = run.communicate(timeout=900)
        assert run.returncode == 0, (name, err[-3000:])
    assert snapshot(cache) == before  # nothing downloaded, built or written into the shared cache
    films = {name: folder / VIDEO_FILE for name, folder in attendees.items()}
    frames = {name: sorted(path.read_bytes() for path in (folder / "frames").glob("frame_*.png"))
              for name, folder in attendees.items()}
    assert all(film.is_file() for film in films.values()) and len(frames["ada"]) == 10
    assert frames["ada"] == frames["bo"] == frames["cy"]  # the same settings, the same pixels: nothing mixed
    assert not (tmp_path / "room" / "ada" / "film" / "walk").is_dir() or \
        len(list((tmp_path / "room" / "ada" / "film" / "walk" / "frames").glob("*.png"))) == 3  # 2 + 1 in-between
    reel = tmp_path / "reel.mp4"
    collected = subprocess.run([*ttlesson_command(), "collect", *map(str, attendees.values()), "--output", str(reel),
                                "--title-seconds", "1"], capture_output=True, text=True, timeout=300,
                               stdin=subprocess.DEVNULL)
    assert collected.returncode == 0, collected.stderr
    lengths = sum(probe(film).duration for film in films.values())
    assert abs(probe(reel).duration - (lengths + 3 * 1)) <= 3 / 24


# --- the dry-run record: the notebooks say when this machine made frames on silicon ---------------------------

def test_a_check_tt_run_is_recorded_and_the_first_cell_says_so(tmp_path, monkeypatch, capsys):
    """The check result is a STAND-IN (no Tenstorrent device here): a CheckResult as check-tt returns it after a
    real chip made the demo frame."""
    from ttlesson.backends.tt.selftest import CheckResult
    from ttlesson.notebook import lesson
    from ttlesson.tenstorrent import silicon

    monkeypatch.setenv("TTLESSON_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TTLESSON_WORKDIR", str(tmp_path / "work"))
    monkeypatch.delenv("TTLESSON_ROOM", raising=False)
    assert silicon.note() == silicon.NOT_YET
    result = CheckResult(device="Tenstorrent n300 (chip 0)", package="models.demos.wormhole.stable_diffusion",
                         ttnn="0.62.0", tt_metal="v0.62.0", board="n300", mesh="N300", prompt="a prompt", seed=174,
                         steps=50, load_seconds=31.0, compile_seconds=212.4, capture_seconds=9.0, frame_seconds=4.912,
                         path=tmp_path / "frame.png", log_file=None, comparison=None)
    silicon.record_run(result)
    lesson.start(step=1)
    said = capsys.readouterr().out
    assert "made tt-metal's demo frame on this machine's n300 (Tenstorrent n300 (chip 0)) on 20" in said
    assert "in 4.91 s after 212.4 s of compiling" in said and silicon.NOT_YET not in said
    silicon.record_path().write_text("{not json")
    assert silicon.note() == silicon.NOT_YET  # a damaged record is no record


# --- the room check, the evening before -----------------------------------------------------------------------

def test_the_room_check_on_a_machine_without_a_card(tmp_path):
    room = write_room(tmp_path / "room.json", model="tiny", steps=2, size=64, workdir=str(tmp_path / "{user}"),
                      film={"keyframes": 2, "transition_frames": 1}, instructor_only=["scaling", "sd35"])
    proc = call_cli("doctor", "--room", "--attendees", "20", "--json",
                    env={"TTLESSON_ROOM": str(room), "TTLESSON_MODEL": "", "TTLESSON_SERVER": ""})
    report = json.loads(proc.stdout)
    rows = {check["name"]: check for check in report["checks"]}
    assert list(rows) == ["room file", "Jupyter kernels", "devices", "model", "kernel cache", "disk",
                          "attendees per hour"]
    assert rows["devices"]["status"] == "warn" and "no Tenstorrent card" in rows["devices"]["detail"]
    assert "24 frames per attendee" in rows["attendees per hour"]["detail"]  # 5 + 10 + 2 + 2 × 3 + 1
    assert "one frame measured here" in rows["attendees per hour"]["detail"] and proc.returncode == 0


def test_the_room_check_says_when_the_service_is_not_there(tmp_path):
    room = write_room(tmp_path / "room.json", model="tiny", server="http://127.0.0.1:9")
    proc = call_cli("doctor", "--room", env={"TTLESSON_ROOM": str(room), "TTLESSON_MODEL": "", "TTLESSON_SERVER": ""})
    assert proc.returncode == 1 and "[fail] render service" in proc.stdout and "cannot be reached" in proc.stdout
    assert "Traceback" not in proc.stderr
