"""Misuse that used to break a promise (a lock skipped, a pace checked after the render, folders nothing can read,
files read forever, litter left by kills), each refused in one sentence before any work, or handled.

The lock tests need a second Unix user: as root, a forked child drops to ``nobody``; otherwise the lock file is
made read-only, which is what another user's lock file is to us.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import call_cli, one_line_error
from hypothesis import example, given, settings
from hypothesis import strategies as st
from PIL import Image

from ttlesson import Frame, Storyboard, render, stitch, verify_frames
from ttlesson import storyboard as storyboard_mod
from ttlesson.errors import StoryboardError, TTLessonError
from ttlesson.fileio import LOCK_NAME, folder_lock, read_user_file, staging_folder, writable_folder
from ttlesson.video import find_ffmpeg

NOBODY = 65534
pytestmark = pytest.mark.filterwarnings("ignore:This process .* is multi-threaded, use of fork:DeprecationWarning")


def frames_in(folder: Path, count: int = 3) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.new("RGB", (64, 48), (70 * i, 90, 160)).save(folder / f"frame_{i:03d}.png")
    return folder


def as_another_user(action) -> str:
    """What ``action()`` says (its return value, or the error's class and text) when run by another user.

    A forked child (this Python cannot be started by ``nobody``: it lives in root's home); it only calls ttlesson
    code already imported here, so the threads that fork leaves behind hold no lock it needs."""
    if os.geteuid() != 0:
        try:
            return str(action())
        except Exception as err:  # the class is part of the answer
            return f"{type(err).__name__}: {err}"
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop to nobody, run, report through the pipe, and leave without pytest's cleanup
        os.close(read)
        try:
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            answer = str(action())
        except BaseException as err:
            answer = f"{type(err).__name__}: {err}"
        os.write(write, answer.encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        answer = pipe.read().decode()
    os.waitpid(pid, 0)
    return answer


@pytest.fixture
def shared_folder(tmp_path_factory):
    """A folder everyone may write in (a workshop's shared folder), reachable by another user."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="ttshared-"))
    folder.chmod(0o777)
    # Lock once here, so everything the lock imports on first use (filelock, and the standard modules it loads
    # lazily) is imported before a test forks a child as another user, who cannot read this Python's library.
    _lock_once(tmp_path_factory.mktemp("warm"))
    yield folder
    import shutil

    shutil.rmtree(folder, ignore_errors=True)


def _lock_once(folder: Path) -> str:
    with folder_lock(folder, "wait."):
        return "locked"


# --- 1. the folder lock in a shared folder -------------------------------------------------------------------

def test_another_users_lock_file_still_locks_the_folder(shared_folder):
    with folder_lock(shared_folder, "wait."):
        lock = shared_folder / LOCK_NAME
        if os.geteuid() != 0:
            lock.chmod(0o444)  # what another user's lock file is to us: readable, not writable
        answer = as_another_user(lambda: _lock_once(shared_folder))
    assert answer.startswith("FolderBusyError") and f"process {os.getpid()}" in answer, answer
    assert as_another_user(lambda: _lock_once(shared_folder)) == "locked"  # released: the next one gets it


def test_a_folder_nobody_can_lock_is_read_unlocked_and_left_as_it_was(shared_folder):
    locked = shared_folder / "nobody-writes-here"
    locked.mkdir()
    locked.chmod(0o555)
    if os.geteuid() == 0:
        assert as_another_user(lambda: _lock_once(locked)) == "locked"
    else:
        assert _lock_once(locked) == "locked"
    assert not (locked / LOCK_NAME).exists()


# --- 2 and 11. a video's pace, planned before its frames are rendered -----------------------------------------

@pytest.fixture
def walk_board(tmp_path):
    board = tmp_path / "walk.json"
    board.write_text(json.dumps(["a fair at dawn", "a fair at noon", "a fair at dusk"]))
    return board


def silence(path: Path, seconds: float) -> Path:
    subprocess.run([find_ffmpeg(), "-loglevel", "error", "-f", "lavfi", "-i", "anullsrc=r=8000:cl=mono", "-t",
                    str(seconds), "-c:a", "aac", "-b:a", "8k", str(path)], check=True, capture_output=True)
    return path


@pytest.mark.parametrize("flags, words", [
    (["--transition-frames", "30", "--seconds-per-keyframe", "0.5"], "give --seconds-per-keyframe 1.3 or more"),
    (["--seconds-per-keyframe", "2", "--crossfade", "3"], "--crossfade 3 does not fit this walk's pace"),
    (["--transition-frames", "4", "--seconds-per-keyframe", "2", "--crossfade", "1"], "--crossfade 1 does not fit"),
])
def test_video_refuses_a_pace_the_walk_cannot_have_before_rendering(walk_board, tmp_path, flags, words):
    out = tmp_path / "out"
    message = one_line_error(call_cli("video", walk_board, "--model", "tiny", "--steps", "1", "--size", "64",
                                      "--out", out, *flags))
    assert words in message
    assert not out.exists()  # nothing rendered, not even the folder


def test_fit_audio_is_bounded_by_the_time_a_keyframe_may_last(tmp_path):
    board = tmp_path / "one.txt"
    board.write_text("a fair at dusk\n")
    out = tmp_path / "out"
    long = silence(tmp_path / "long.m4a", 3700)  # one keyframe: 3700 s per keyframe, over the 3600 s bound
    message = one_line_error(call_cli("video", board, "--model", "tiny", "--out", out, "--audio", long,
                                      "--fit-audio"))
    assert "lasts 3700 s" in message and "3600 s a keyframe may last" in message and "--fit-audio" in message
    assert not out.exists()


def test_fit_audio_too_short_for_the_walk_names_the_soundtrack_not_a_flag_never_given(walk_board, tmp_path):
    short = silence(tmp_path / "short.m4a", 1)
    out = tmp_path / "out"
    message = one_line_error(call_cli("video", walk_board, "--model", "tiny", "--out", out, "--audio", short,
                                      "--fit-audio", "--transition-frames", "12"))
    assert "soundtrack" in message and "--seconds-per-keyframe" not in message
    assert not out.exists()


# --- 3. folders of frames that are not (whole) render folders -------------------------------------------------

def test_a_plain_folder_of_frames_stitches_to_its_default_video(tmp_path):
    folder = frames_in(tmp_path / "stills")
    info = stitch(folder)
    assert info.path == folder / "video.mp4" and info.frames == 3
    assert stitch(folder).path == folder / "video.mp4"  # again: the video beside the frames is not one of them


def test_a_plain_folder_is_checked_for_gaps_not_refused_as_its_own_output(tmp_path):
    folder = frames_in(tmp_path / "stills")
    (folder / "frame_001.png").unlink()
    message = one_line_error(call_cli("stitch", folder))
    assert "no frame_001.png" in message


def test_a_render_folder_that_lost_its_manifest_stitches_its_frames(tmp_path):
    frames_in(tmp_path / "render" / "frames")
    info = stitch(tmp_path / "render")
    assert info.path == tmp_path / "render" / "video.mp4" and info.frames == 3


def test_a_render_folder_that_lost_its_frames_says_so(tmp_path):
    folder = tmp_path / "render"
    result = render(Storyboard(frames=[Frame("a fair at dusk")]), folder, model="tiny", steps=1, size=64)
    assert result.made == [0]
    import shutil

    shutil.rmtree(folder / "frames")
    message = one_line_error(call_cli("stitch", folder))
    assert "has a manifest but no frames/ folder" in message


def test_a_stitch_during_a_render_names_the_render(tmp_path):
    folder = frames_in(tmp_path / "render" / "frames")
    with folder_lock(folder.parent, "wait."):  # a render holding its folder (here: this process)
        message = one_line_error(call_cli("stitch", folder.parent))
    assert "is in use by this process" in message and "then stitch" in message


# --- 4. the Python API checks what a file would be checked for ------------------------------------------------

@pytest.mark.parametrize("call, words", [
    (lambda out: render(Storyboard(frames=[Frame("a fair", seed=-5)]), out, model="tiny"), '"seed" must be'),
    (lambda out: render(Storyboard(frames=[Frame("a fair", seed=2 ** 33)]), out, model="tiny"), '"seed" must be'),
    (lambda out: render(Storyboard(frames=[]), out, model="tiny"), "holds no frames"),
    (lambda out: render(Storyboard(frames=[Frame(prompt=123)]), out, model="tiny"), '"prompt" must be text'),
    (lambda out: render(Storyboard(frames="a fair"), out, model="tiny"), "must be a list of Frame"),
    (lambda out: render(Storyboard(frames=["a", "b"], transition_frames=-1), out, model="tiny"),
     '"transition_frames" must be'),
    (lambda out: render(Storyboard(frames=["a"], easing="bouncy"), out, model="tiny"), "easing must be one of"),
    (lambda out: render("worlds-fair", out, model="tiny", overwrite="no"), "overwrite= must be True or False"),
    (lambda out: render("worlds-fair", out, model="tiny", on_event=5), "on_event= must be a function"),
    (lambda out: stitch(123), "must be a file or folder path"),
    (lambda out: stitch(out.parent, output=5), "output= must be a file or folder path"),
    (lambda out: verify_frames(None), "out_dir= must be a file or folder path"),
], ids=["seed-5", "seed2**33", "no-frames", "prompt123", "frames-str", "transitions-1", "easing", "overwrite-no",
        "on_event5", "stitch123", "output5", "verify-None"])
def test_wrong_values_from_python_are_one_sentence_before_any_work(tmp_path, call, words):
    out = tmp_path / "out"
    with pytest.raises(TTLessonError, match=words.replace("*", r"\*")):
        call(out)
    assert not out.exists()


def test_a_storyboard_made_in_python_renders_a_manifest_that_stitch_and_verify_read(tmp_path):
    board = Storyboard(frames=[Frame("  a fair at dawn  ", seed=7), "a fair at dusk"], name="mine")
    result = render(board, tmp_path / "out", model="tiny", steps=1, size=64)
    assert verify_frames(tmp_path / "out").frames and stitch(tmp_path / "out").frames == 2
    assert result.manifest.frames[0].prompt == "a fair at dawn"


frame_values = st.builds(
    Frame,
    prompt=st.one_of(st.text(max_size=30), st.integers(), st.none()),
    seed=st.one_of(st.none(), st.integers(min_value=-2 ** 40, max_value=2 ** 40), st.floats(), st.text(max_size=3)),
    negative_prompt=st.one_of(st.none(), st.text(max_size=10), st.integers()),
    transition_frames=st.one_of(st.none(), st.integers(min_value=-5, max_value=2000), st.booleans()),
)


@settings(max_examples=300, deadline=None)
@given(frames=st.lists(frame_values, max_size=4), name=st.one_of(st.text(max_size=8), st.integers()))
@example(frames=[Frame("a", seed=-5)], name="x")
def test_a_storyboard_object_is_refused_in_one_sentence_or_reads_back_from_its_file(frames, name):
    try:
        board = storyboard_mod.checked(Storyboard(frames=frames, name=name))
    except StoryboardError as err:
        assert str(err).endswith(".") and "\n" not in str(err).strip()
        return
    again = storyboard_mod.loads(board.to_json(), source="saved")
    assert again.frames == board.frames


# --- 5. a notebook's work folder that cannot be written -------------------------------------------------------

@pytest.mark.parametrize("kind", ["proc", "loop", "file-on-the-way"])
def test_the_notebooks_first_cell_refuses_a_work_folder_that_cannot_be_written(tmp_path, monkeypatch, kind):
    from ttlesson.notebook import lesson

    if kind == "proc":
        workdir = "/proc/ttlesson-work"
    elif kind == "loop":
        (tmp_path / "loop").symlink_to(tmp_path / "loop")
        workdir = str(tmp_path / "loop" / "work")
    else:
        (tmp_path / "a-file").write_text("x")
        workdir = str(tmp_path / "a-file" / "work")
    monkeypatch.setenv("TTLESSON_WORKDIR", workdir)
    with pytest.raises(TTLessonError, match="TTLESSON_WORKDIR sets it") as refused:
        lesson.start()
    assert "\n" not in str(refused.value)


# --- 6. folders a render must never fill ----------------------------------------------------------------------

@pytest.mark.parametrize("out", ["/", "~", "/tmp", "/etc/ttlesson-out", "/usr/local/film", "/home"])
def test_render_refuses_the_root_system_folders_and_a_home_folder_itself(out):
    message = one_line_error(call_cli("render", "worlds-fair", "--model", "tiny", "--out", out))
    assert "choose a folder of your own" in message or "give it a folder of its own" in message
    assert not Path("/frames").exists() and not Path("/manifest.json").exists()


def test_dev_shm_holds_files_and_may_be_an_out_folder(tmp_path):
    if not Path("/dev/shm").is_dir():
        pytest.skip("no /dev/shm here")
    import tempfile

    folder = Path(tempfile.mkdtemp(dir="/dev/shm")) / "out"
    try:
        assert writable_folder(folder, "--out", fills=True) == folder
    finally:
        import shutil

        shutil.rmtree(folder.parent, ignore_errors=True)


# --- 7. special files named as storyboards, manifests and tokens ----------------------------------------------

def test_a_device_or_a_fifo_is_refused_as_a_storyboard_without_reading_it(tmp_path):
    fifo = tmp_path / "board.json"
    os.mkfifo(fifo)
    for path, kind in (("/dev/zero", "a device"), (fifo, "a named pipe")):
        message = one_line_error(call_cli("render", path, "--model", "tiny", "--out", tmp_path / "out"))
        assert kind in message


def test_a_manifest_that_is_a_fifo_is_refused_without_waiting(tmp_path):
    frames_in(tmp_path / "render" / "frames")
    os.mkfifo(tmp_path / "render" / "manifest.json")
    message = one_line_error(call_cli("stitch", tmp_path / "render"))
    assert "a named pipe" in message


def test_a_file_that_claims_to_be_empty_is_read_no_further_than_the_limit(tmp_path):
    with pytest.raises(TTLessonError, match="holds more than"):
        read_user_file(Path("/proc/self/maps"), "Storyboard file", 16)  # st_size 0, yet it holds more


# --- 8. litter a kill leaves behind ---------------------------------------------------------------------------

def test_folders_left_by_killed_processes_are_removed_by_the_next_run(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()  # a pid that has just ended
    litter = [tmp_path / f".video.mp4.frames.{dead}.abc123", tmp_path / f".tiny.{dead}.x7y8z9"]
    alive = tmp_path / f".video.mp4.frames.{os.getpid()}.keepme"
    for folder in (*litter, alive):
        folder.mkdir()
        (folder / "frame.png").write_bytes(b"x")
    staging_folder(tmp_path, "video.mp4.frames").rmdir()
    staging_folder(tmp_path, "tiny").rmdir()
    assert not any(folder.exists() for folder in litter) and alive.exists()


def test_a_keyframe_paced_stitch_leaves_no_sequence_folder(tmp_path):
    folder = frames_in(tmp_path / "stills", 2)
    stitch(folder, seconds_per_keyframe=1)
    assert [path.name for path in folder.iterdir() if path.name.startswith(".")] == []


# --- 10. one prompt a line ------------------------------------------------------------------------------------

def test_a_txt_line_is_one_frame_whatever_characters_it_holds(tmp_path):
    path = tmp_path / "board.txt"
    path.write_bytes("one\x0cpage\r\ntwo\u2028lines\u0085nel\rthree\n\n# note\nfour\x00\n".encode())
    with pytest.raises(StoryboardError, match=r"line 6: the prompt holds a NUL"):
        storyboard_mod.load(path)
    path.write_bytes("one\x0cpage\r\ntwo\u2028lines\u0085nel\rthree\n".encode())
    assert storyboard_mod.load(path).prompts == ["one\x0cpage", "two\u2028lines\u0085nel", "three"]


prompt_text = st.text(st.characters(blacklist_characters="\r\n\x00", blacklist_categories=("Cs",)), min_size=1,
                      max_size=20).filter(lambda text: text.strip() and not text.strip().startswith("#"))


@settings(max_examples=200, deadline=None)
@given(prompts=st.lists(prompt_text, min_size=1, max_size=6), ends=st.lists(st.sampled_from(["\n", "\r\n", "\r"]),
                                                                            min_size=6, max_size=6))
def test_txt_storyboards_have_one_frame_per_line_for_any_line_ending(prompts, ends):
    text = "".join(prompt + end for prompt, end in zip(prompts, ends))
    assert storyboard_mod.loads(text, fmt="txt").prompts == [prompt.strip() for prompt in prompts]


def test_an_audio_file_that_cannot_be_read_is_told_as_such(shared_folder):
    audio = silence(shared_folder / "sound.m4a", 1)
    audio.chmod(0)
    from ttlesson.video import check_audio

    answer = as_another_user(lambda: check_audio(audio)) if os.geteuid() == 0 else None
    if answer is None:
        with pytest.raises(TTLessonError) as refused:
            check_audio(audio)
        answer = str(refused.value)
    assert "cannot be read" in answer and "no sound" not in answer
    assert stat.S_IMODE(audio.stat().st_mode) == 0


# --- poorly told before: a damaged model folder -------------------------------------------------------------

def test_a_damaged_tiny_model_in_the_cache_is_made_again(tmp_path, monkeypatch):
    from ttlesson.models.tiny import tiny_model_folder

    monkeypatch.setenv("TTLESSON_CACHE", str(tmp_path / "cache"))
    weights = next((tiny_model_folder() / "unet").glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:1000])  # a copy cut short (a full disk, a killed copy)
    result = render(Storyboard(frames=["a fair at dusk"]), tmp_path / "out", model="tiny", steps=1, size=64)
    assert result.made == [0] and weights.stat().st_size > 1000


def test_a_damaged_local_model_folder_is_one_sentence_with_the_fix(tmp_path):
    import shutil

    from ttlesson.models.tiny import tiny_model_folder

    folder = tmp_path / "my-model"
    shutil.copytree(tiny_model_folder(), folder)
    weights = next((folder / "unet").glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:1000])
    message = one_line_error(call_cli("render", "worlds-fair", "--model", folder, "--steps", "1", "--size", "64",
                                      "--out", tmp_path / "out"))
    assert f"model files in {folder.resolve()}" in message and "save the pipeline there again" in message
