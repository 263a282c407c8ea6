"""Where the command's report goes: a closed, full or ASCII-only standard output, and paths checked before work.

The work is done whatever happens to stdout; a report that cannot be written is one sentence on stderr and exit
status 1, never a traceback. A reader that closes the pipe (``| head``) still ends the command quietly.
"""

import os
import subprocess

import pytest
from helpers import call_cli, one_line_error, run_cli, ttlesson_command
from PIL import Image

from ttlesson.errors import TTLessonError
from ttlesson.inputs import MOST_DEVICES
from ttlesson.video import probe


def frames_folder(tmp_path, count=2):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(count):
        Image.new("RGB", (64, 48), (60 * i, 90, 160)).save(folder / f"frame_{i:03d}.png")
    return folder


@pytest.fixture(scope="module")
def render_folder(tmp_path_factory):
    """Two tiny frames and their manifest: what verify reads."""
    folder = tmp_path_factory.mktemp("render")
    board = folder / "board.txt"
    board.write_text("a harbour at dawn\na harbour at dusk\n")
    proc = call_cli("render", board, "--model", "tiny", "--steps", "2", "--size", "64", "--quiet", "--out",
                    folder / "out")
    assert proc.returncode == 0, proc.stderr
    return folder / "out"


def run_with_stdout(redirection: str, *args) -> subprocess.CompletedProcess:
    """``ttlesson ARGS`` with its stdout redirected by the shell (``>&-`` closes it), stderr captured."""
    command = [*ttlesson_command(), *map(str, args)]
    return subprocess.run(["sh", "-c", f'"$@" {redirection}', "sh", *command], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, timeout=120)


def report_lost_sentence(proc: subprocess.CompletedProcess) -> str:
    """Assert the command finished, but said in one sentence that its report was lost; return that sentence."""
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "the work is done, but its report could not be written to standard output" in lines[0]
    return lines[0]


# --- stdout closed or full: the work done, one sentence, exit 1 --------------------------------------------

@pytest.mark.parametrize("redirection,reason", [(">&-", "it is closed"), (">/dev/full", "the disk behind it is full"),
                                                ("1</dev/null", "open only for reading")])
def test_stitch_makes_the_video_when_stdout_cannot_take_the_report(tmp_path, redirection, reason):
    if redirection == ">/dev/full" and not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    video = tmp_path / "out.mp4"
    proc = run_with_stdout(redirection, "stitch", frames_folder(tmp_path), "--output", video)
    assert reason in report_lost_sentence(proc)
    assert probe(video).frames == 2


@pytest.mark.parametrize("redirection", [">&-", ">/dev/full"])
def test_verify_says_its_report_was_lost(render_folder, redirection):
    if redirection == ">/dev/full" and not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    report_lost_sentence(run_with_stdout(redirection, "verify", render_folder))


def test_a_refusal_with_stdout_closed_is_only_the_refusal(tmp_path):
    proc = run_with_stdout(">&-", "stitch", tmp_path / "nowhere")
    assert "does not exist" in one_line_error(proc)


def test_a_closed_pipe_still_ends_quietly_after_the_work(tmp_path):
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first line, as with `| head -0`
    video = tmp_path / "out.mp4"
    try:
        proc = subprocess.run([*ttlesson_command(), "stitch", frames_folder(tmp_path), "--output", video],
                              stdout=write, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write)
    assert (proc.returncode, proc.stderr) == (141, "")
    assert probe(video).frames == 2


# --- a narrow stdout: characters it cannot hold are escaped, not a UnicodeEncodeError ----------------------

def test_stitch_on_an_ascii_stdout_escapes_what_ascii_lacks(tmp_path):
    video = tmp_path / "out.mp4"
    proc = run_cli("stitch", frames_folder(tmp_path), "--output", video, env={"PYTHONIOENCODING": "ascii"},
                   timeout=120)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "64\\xd748" in proc.stdout  # 64×48
    assert probe(video).frames == 2


def test_verify_on_an_ascii_stdout_escapes_what_ascii_lacks(render_folder):
    proc = run_cli("verify", render_folder, env={"PYTHONIOENCODING": "ascii"}, timeout=120)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "(frames 0\\u20131)" in proc.stdout  # frames 0–1


def test_an_ascii_stderr_escapes_the_refusal(tmp_path):
    proc = run_cli("render", tmp_path / "missing×.json", "--out", tmp_path / "o", "--model", "tiny",
                   env={"PYTHONIOENCODING": "ascii"}, timeout=120)
    assert "missing\\xd7.json" in one_line_error(proc)


# --- bench --json: its path checked before the benchmark ----------------------------------------------------

@pytest.fixture
def bench_runs(monkeypatch):
    """Stand-ins for both benchmarks that record each run and return a result at once."""
    from ttlesson.bench import full_size as bench_arch
    from ttlesson.bench import this_machine as bench

    runs = []

    class Timed:
        def to_json(self) -> str:
            return '{"model": "tiny"}'

        def __str__(self) -> str:
            return "timed"

    def fake_run(**options):
        runs.append(options)
        return Timed()

    monkeypatch.setattr(bench, "run", fake_run)
    monkeypatch.setattr(bench_arch, "run", fake_run)
    return runs


def a_file(tmp_path):
    (tmp_path / "a-file").write_text("")
    return tmp_path / "a-file"


@pytest.mark.parametrize("arch_only", [[], ["--arch-only"]], ids=["bench", "arch-only"])
@pytest.mark.parametrize("target,expected", [
    (lambda t: t, "is a folder; give a file name in it"),
    (lambda t: a_file(t) / "bench.json", "a-file is a file, not a folder"),
    (lambda t: "/proc/bench.json", "cannot hold files"),
], ids=["folder", "under-a-file", "proc"])
def test_bench_json_path_is_refused_before_the_benchmark(tmp_path, bench_runs, arch_only, target, expected):
    proc = call_cli("bench", "--model", "tiny", *arch_only, "--json", target(tmp_path))
    assert expected in one_line_error(proc)
    assert bench_runs == []


def test_bench_json_is_written_to_a_new_folder(tmp_path, bench_runs):
    path = tmp_path / "new" / "bench.json"
    proc = call_cli("bench", "--model", "tiny", "--json", path)
    assert proc.returncode == 0, proc.stderr
    assert path.read_text() == '{"model": "tiny"}\n' and len(bench_runs) == 1
    assert proc.stdout.splitlines()[-1] == f"json: {path}"


# --- render --devices: the refusal names the range ----------------------------------------------------------

@pytest.mark.parametrize("devices,expected", [
    ("99999", "--devices 99999 is out of range"),
    ("0", "--devices 0 is out of range"),
    ("none", "--devices 'none' is not understood"),
    ("\u0663", "is not understood"),  # an Arabic-Indic three: a digit to Python, not to the user's shell scripts
])
def test_devices_refusal_names_the_range(tmp_path, devices, expected):
    line = one_line_error(call_cli("render", "worlds-fair", "--model", "tiny", "--out", tmp_path / "o",
                                   "--devices", devices))
    assert expected in line and f"from 1 to {MOST_DEVICES}, or all" in line


def test_the_cli_range_is_what_render_accepts():
    from ttlesson.render import _devices

    assert _devices(MOST_DEVICES, "auto") == MOST_DEVICES
    with pytest.raises(TTLessonError, match=f"Devices {MOST_DEVICES + 1}"):
        _devices(MOST_DEVICES + 1, "auto")
