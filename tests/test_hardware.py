"""Hardware detection: sysfs trees and tt-smi snapshots built here, the real ttnn wheel on mock clusters, this
machine as it is, and which device made a render's frames."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from helpers import MOCK_ENV, one_line_error, run_json, run_ttlesson
from machine_helpers import CLUSTERS, HAS_TT_DEVICE, make_snapshot, make_sysfs, n300_entries, snapshot_entry

from ttlesson import machine, manifest
from ttlesson.errors import FrameVerificationError, HardwareSourceError
from ttlesson.manifest import FrameRecord, Manifest
from ttlesson.tenstorrent import boards
from ttlesson.tenstorrent.arch import Arch

no_tt_here = pytest.mark.skipif(HAS_TT_DEVICE, reason="this machine has a Tenstorrent device")


@pytest.mark.parametrize("written, board", [
    ("n300 L", "n300"), ("n300 R", "n300"), ("n150 L", "n150"), ("tt-galaxy-wh L", "galaxy-wormhole"),
    ("P300C", "p300c"), ("p150a", "p150a"), ("bh-scrappy", "p100"), ("tt-galaxy-bh", "galaxy-blackhole"),
])
def test_board_names_are_normalised(written, board):
    assert boards.normalise_board(written) == board


# --- kernel driver (sysfs) ---------------------------------------------------------------------------------

@pytest.mark.parametrize("cards, count, chips, mesh, arch", [
    (["n150"], 1, 1, "N150", "wormhole"),
    (["n300"], 1, 2, "N300", "wormhole"),  # the second chip is behind the first: one sysfs entry
    (["n300"] * 4, 4, 8, "T3K", "wormhole"),
    (["p150a"], 1, 1, "P150", "blackhole"),
    (["p150b"] * 4, 4, 4, "P150x4", "blackhole"),
    ([("p300c", "0000046100000007"), ("p300c", "0000046100000007")], 1, 2, "P300", "blackhole"),
    (["p300c", "p300c"], 1, 2, "P300", "blackhole"),  # no serials: a p300 lists two chips
    (["galaxy-wormhole"] * 32, 1, 32, "TG", "wormhole"),
])
def test_sysfs_trees(tmp_path, cards, count, chips, mesh, arch):
    report = machine.detect(sysfs_root=make_sysfs(tmp_path, cards))
    assert (len(report.cards), report.total_chips, report.mesh_device, report.arch) == (count, chips, mesh, arch)
    assert report.needs_blackhole_env == (arch == "blackhole")
    assert report.tt_device and report.sources[0].answered
    assert all(card.source == "kernel driver" for card in report.cards)


def test_sysfs_with_p300c_cards_needs_blackhole(tmp_path):
    report = machine.detect(sysfs_root=make_sysfs(tmp_path, ["p300c"] * 4))
    assert [card.board for card in report.cards] == ["p300c", "p300c"]
    assert report.total_chips == 4 and report.needs_blackhole_env
    assert report.mesh_device == "P300x2"  # a QuietBox 2, as tt-metal's demos name it
    assert "export TT_METAL_ARCH_NAME=blackhole" in str(report)


def test_mixed_and_unknown_boards(tmp_path):
    mixed = machine.detect(sysfs_root=make_sysfs(tmp_path / "mixed", ["n150", "p150a"]))
    assert mixed.mesh_device is None and "mixed boards" in mixed.mesh_device_note and mixed.arch == "mixed"
    odd = machine.detect(sysfs_root=make_sysfs(tmp_path / "odd", ["unknown"]))
    assert [(card.board, card.arch, card.chips) for card in odd.cards] == [("unknown", "unknown", 1)]


def test_sysfs_root_may_be_the_class_folder(tmp_path):
    make_sysfs(tmp_path, ["n300"])
    report = machine.detect(sysfs_root=tmp_path / "class" / "tenstorrent")
    assert report.mesh_device == "N300"


def test_empty_sysfs_means_no_device(tmp_path):
    report = machine.detect(sysfs_root=tmp_path)
    assert report.cards == [] and not report.tt_device and report.mesh_device is None
    assert "no Tenstorrent device" in report.sources[0].summary
    assert report.sources[1].summary.startswith("not run")  # saved sources: live tt-smi stays out


# --- tt-smi snapshots --------------------------------------------------------------------------------------

def test_n300_shown_as_l_and_r_is_one_card(tmp_path):
    snapshot = make_snapshot(tmp_path / "s.json", n300_entries(1))
    report = machine.detect(tt_smi_snapshot=snapshot)
    assert [(card.board, card.chips) for card in report.cards] == [("n300", 2)]
    assert report.mesh_device == "N300" and report.total_chips == 2
    assert "n300 L at 0000:00:00.0" in report.sources[1].summary and "tt-smi 3.0.30" in report.sources[1].summary


def test_n300_without_board_ids_is_still_one_card(tmp_path):
    snapshot = make_snapshot(tmp_path / "s.json", [snapshot_entry("n300 L"), snapshot_entry("n300 R")])
    assert [card.chips for card in machine.detect(tt_smi_snapshot=snapshot).cards] == [2]


def test_four_n300_cards_are_a_t3k(tmp_path):
    report = machine.detect(tt_smi_snapshot=make_snapshot(tmp_path / "s.json", n300_entries(4)))
    assert (len(report.cards), report.total_chips, report.mesh_device) == (4, 8, "T3K")
    assert not report.needs_blackhole_env


@pytest.mark.parametrize("entries, mesh, chips", [
    ([snapshot_entry("p300c", "0000046200000001"), snapshot_entry("p300c", "0000046200000001")], "P300", 2),
    ([snapshot_entry("p150a", "0000040100000001")], "P150", 1),
    ([snapshot_entry("n150 L", "0000018100000001")], "N150", 1),
    ([snapshot_entry("tt-galaxy-wh L", f"0000035{tray:09x}") for tray in range(4) for _ in range(8)], "TG", 32),
    ([snapshot_entry("tt-galaxy-bh", "0000047000000001")] * 32, "BHGLX", 32),
])
def test_snapshots_of_other_boards(tmp_path, entries, mesh, chips):
    report = machine.detect(tt_smi_snapshot=make_snapshot(tmp_path / "s.json", entries))
    assert (report.mesh_device, report.total_chips) == (mesh, chips)
    assert report.needs_blackhole_env == (mesh in ("P300", "P150", "BHGLX"))


def test_snapshot_after_log_lines_is_read(tmp_path):
    path = tmp_path / "s.json"
    make_snapshot(path, n300_entries(1))
    path.write_text("Gathering Information ━━━━━━━━ 100%\n" + path.read_text())
    assert machine.detect(tt_smi_snapshot=path).mesh_device == "N300"


@pytest.mark.parametrize("text, says", [
    ("Error in detecting devices!\n", "is not a tt-smi snapshot (no JSON object in it)"),
    ('{"host_info": {}}', "has no device_info list"),
    ('{"device_info": [{"board_info": {"board_type": "n300 L"}}, {"board_info": {}}]}',
     "device_info[1] has no board_info.board_type"),
    ('{"device_info": [{"telemetry": {}}]}', "device_info[0] has no board_info.board_type"),
])
def test_broken_snapshots_are_named_clearly(tmp_path, text, says):
    path = tmp_path / "broken.json"
    path.write_text(text)
    with pytest.raises(HardwareSourceError, match=r"tt-smi -s > snapshot\.json") as caught:
        machine.detect(tt_smi_snapshot=path)
    assert says in str(caught.value) and str(path) in str(caught.value)


def test_broken_snapshot_on_the_cli_is_one_line(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("not json at all")
    line = one_line_error(run_ttlesson("detect", "--tt-smi-snapshot", path))
    assert line.startswith("ttlesson detect: error: ") and str(path) in line
    missing = one_line_error(run_ttlesson("detect", "--tt-smi-snapshot", tmp_path / "nope.json"))
    assert "cannot be read" in missing
    assert "is not a folder" in one_line_error(run_ttlesson("detect", "--sysfs-root", tmp_path / "nope"))


def test_sources_that_disagree_are_reported(tmp_path):
    sysfs = make_sysfs(tmp_path / "sys", ["n300"])
    snapshot = make_snapshot(tmp_path / "s.json", n300_entries(4))
    report = machine.detect(sysfs_root=sysfs, tt_smi_snapshot=snapshot)
    assert report.mesh_device == "T3K"  # tt-smi sees every chip, so it is preferred
    assert "tt-smi 8 chips, kernel driver 2 chips" in report.disagreement and "tt-smi -r" in str(report)


def test_cli_with_four_n300_cards_says_t3k(tmp_path):
    sysfs = run_json("detect", "--sysfs-root", make_sysfs(tmp_path / "sys", ["n300"] * 4))
    snapshot = run_json("detect", "--tt-smi-snapshot", make_snapshot(tmp_path / "s.json", n300_entries(4)))
    for report in (sysfs, snapshot):
        assert report["tenstorrent"]["mesh_device"] == "T3K" and report["tenstorrent"]["total_chips"] == 8
        assert [card["family"] for card in report["tenstorrent"]["cards"]] == ["n300"] * 4


# --- the report's forms ------------------------------------------------------------------------------------

def test_text_html_and_json_forms(tmp_path):
    report = machine.detect(sysfs_root=make_sysfs(tmp_path, ["p150a"]))
    text, page = str(report), report._repr_html_()
    assert "MESH_DEVICE" in text and "P150" in text and report.auto.why in text
    assert page.startswith("<table>") and "<th style='text-align:left'>MESH_DEVICE</th>" in page
    assert json.loads(report.to_json())["tenstorrent"]["cards"][0]["board"] == "p150a"


def test_without_a_card_the_rows_about_one_fold_into_the_first(tmp_path, monkeypatch):
    for name in ("TT_METAL_HOME", "TT_METAL_RUNTIME_ROOT", "TT_METAL_ARCH_NAME"):
        monkeypatch.delenv(name, raising=False)
    report = machine.detect(sysfs_root=tmp_path)
    rows = report.rows()
    labels = [label for label, _ in rows]
    assert labels[0] == "Tenstorrent" and labels[-4:] == ["NVIDIA GPUs", "torch", "CPU", "auto backend"]
    assert set(labels) <= {"Tenstorrent", "Python", "ttnn", "NVIDIA GPUs", "torch", "CPU", "auto backend"}
    assert ("ttnn" in labels) == report.ttnn.installed
    assert rows[0][1] == (f"none (kernel driver: no Tenstorrent device in {tmp_path}), so MESH_DEVICE, "
                          "TT_METAL_ARCH_NAME and the tt backend do not apply here")
    sentences = [text for _, text in rows] + [report.auto.why]
    assert len(set(sentences)) == len(sentences)
    page = report._repr_html_()
    assert "MESH_DEVICE" in page and "auto backend" in page  # what notebook 01's test looks for on screen


def test_a_container_not_given_the_devices_says_so_in_the_folded_row(tmp_path):
    host = machine.HostPaths.under(tmp_path)
    make_sysfs(host.sys, ["n150"])  # listed by the driver, but no /dev/tenstorrent/0 here
    first = machine.detect(host=host, tt_smi_timeout=5).rows()[0]
    assert first[0] == "Tenstorrent" and "was not given the devices" in first[1]


def test_with_a_card_each_sentence_is_said_once(tmp_path):
    report = machine.detect(sysfs_root=make_sysfs(tmp_path, ["n300"]))
    labels = [label for label, _ in report.rows()]
    assert {"MESH_DEVICE", "TT_METAL_ARCH_NAME", "kernel driver", "tt-metal", "source: kernel driver"} <= set(labels)
    assert "source: ttnn" not in labels  # the ttnn row says what ttnn answered
    assert str(report).count("ttlesson detect --ttnn asks") <= 1


@pytest.mark.parametrize("board, value, says", [
    ("p150a", "", "needed: export TT_METAL_ARCH_NAME=blackhole (it is unset now)"),
    ("p150a", "wormhole_b0", "needed: export TT_METAL_ARCH_NAME=blackhole (it is 'wormhole_b0' now)"),
    ("p150a", "blackhole", "blackhole, as Blackhole cards need"),
    ("n150", "", "unset (not needed: no Blackhole card)"),
    ("n150", "blackhole", "blackhole, but there is no Blackhole card here: unset TT_METAL_ARCH_NAME"),
])
def test_arch_name_row(tmp_path, monkeypatch, board, value, says):
    monkeypatch.setenv("TT_METAL_ARCH_NAME", value)
    rows = dict(machine.detect(sysfs_root=make_sysfs(tmp_path, [board])).rows())
    assert rows["TT_METAL_ARCH_NAME"] == says


@pytest.mark.parametrize("gpus, cuda, where", [
    ([], "12.8", "the CPU"),
    (["NVIDIA H100 80GB HBM3"], "12.8", "the NVIDIA H100 80GB HBM3 GPU (CUDA)"),
    (["NVIDIA H100 80GB HBM3"], None, "this torch build has no CUDA"),
])
def test_fallback_sentence_names_where_frames_go(tmp_path, gpus, cuda, where):
    report = machine.HardwareReport(cards=[], sources=[], ttnn=machine.TtnnInfo(installed=False), gpus=gpus,
                                     gpu_source="test", torch=machine.TorchInfo(True, "2.8.0", cuda),
                                     cpu=machine.cpu_info())
    assert report.auto.backend == "torch"
    assert report.auto.why.startswith("No Tenstorrent device: frames will be made on ") and where in report.auto.why
    assert report.auto.why.endswith("not TT hardware.")


def test_an_arch_has_both_spellings_and_either_one_parses():
    assert [(arch.value, arch.metal_name) for arch in Arch] == [("wormhole", "wormhole_b0"), ("blackhole", "blackhole")]
    assert Arch.parse("wormhole") is Arch.parse(" Wormhole_B0") is Arch.WORMHOLE
    assert Arch.parse("blackhole") is Arch.BLACKHOLE
    assert Arch.parse("quasar") is Arch.parse("") is Arch.parse(None) is None


def test_the_report_spells_the_arch_as_each_reader_does():
    """Cards in the words tt-smi uses (wormhole); the tt backend's system in tt-metal's (wormhole_b0)."""
    card = boards.Card("n150", Arch.WORMHOLE, 1, "kernel driver")
    report = machine.HardwareReport(cards=[card], sources=[], ttnn=machine.TtnnInfo(installed=False), gpus=[],
                                    gpu_source="test", torch=machine.TorchInfo(False), cpu=machine.cpu_info())
    said = json.loads(report.to_json())
    assert (said["tenstorrent"]["arch"], said["tenstorrent"]["cards"][0]["arch"]) == ("wormhole", "wormhole")
    assert said["tt_backend"]["system"] == {"name": "N150", "arch": "wormhole_b0", "chips": 1, "shape": [1, 1]}
    assert "1 card, 1 chip, wormhole" in str(report) and "not on this N150: 1 wormhole_b0 chip" in str(report)


def test_a_card_without_ttnn_falls_back_and_says_so(tmp_path):
    card = boards.Card("n150", Arch.WORMHOLE, 1, "kernel driver")
    report = machine.HardwareReport(cards=[card], sources=[], ttnn=machine.TtnnInfo(installed=False), gpus=[],
                                     gpu_source="test", torch=machine.TorchInfo(True, "2.8.0"),
                                     cpu=machine.cpu_info())
    assert report.auto.backend == "torch" and "ttnn is not installed" in report.auto.why
    with_ttnn = machine.HardwareReport(cards=[card], sources=[], ttnn=machine.TtnnInfo(True, "0.81.1"), gpus=[],
                                        gpu_source="test", torch=machine.TorchInfo(False), cpu=machine.cpu_info())
    assert with_ttnn.auto.backend == "tt" and "MESH_DEVICE=N150" in with_ttnn.auto.why


def test_device_notice():
    assert boards.device_notice("cpu") == "Frames are being made on the CPU, not Tenstorrent hardware."
    assert "cuda:0 (NVIDIA H100)" in boards.device_notice("cuda:0 (NVIDIA H100)")
    assert boards.device_notice("tt: n150 chip 0") is None and boards.device_notice(None) is None


# --- this machine ------------------------------------------------------------------------------------------

@no_tt_here
def test_this_machine_has_no_tenstorrent_device():
    started = time.perf_counter()
    proc = run_ttlesson("detect")
    seconds = time.perf_counter() - started
    assert proc.returncode == 0, proc.stderr
    assert "no Tenstorrent device" in proc.stdout
    assert "No Tenstorrent device: frames will be made on " in proc.stdout and "not TT hardware." in proc.stdout
    assert seconds < 20  # a loose sanity bound; the measured times are in docs/machine.md
    report = run_json("detect")
    assert report["tenstorrent"]["device"] is False and report["tenstorrent"]["cards"] == []
    assert report["auto"]["backend"] == "torch"
    if not report["gpus"]["names"]:
        assert report["auto"]["device"] == "cpu" and "on the CPU, not TT hardware" in report["auto"]["why"]


@no_tt_here
def test_auto_resolves_to_torch_here():
    from ttlesson.backends import resolve_name

    assert machine.auto_backend() == "torch" and resolve_name("auto") == "torch"


def test_auto_picks_tt_only_with_a_device_and_ttnn(monkeypatch):
    card = boards.Card("n150", Arch.WORMHOLE, 1, "kernel driver")
    answer = machine.SourceAnswer("kernel driver", True, "test")
    from ttlesson.machine import report  # where auto_backend looks the two sources up

    monkeypatch.setattr(report, "read_kernel_driver", lambda root, host=None: ([card], answer))
    monkeypatch.setattr(report, "ttnn_install_info", lambda: machine.TtnnInfo(installed=True))
    assert machine.auto_backend() == "tt"
    monkeypatch.setattr(report, "ttnn_install_info", lambda: machine.TtnnInfo(installed=False))
    assert machine.auto_backend() == "torch"


def test_detect_and_doctor_do_not_import_torch():
    script = ("import contextlib, io, sys\n"
              "from ttlesson.cli import main\n"
              "with contextlib.redirect_stdout(io.StringIO()):\n"
              "    main(['detect']); main(['doctor'])\n"
              "print(sorted(name for name in ('torch', 'diffusers', 'transformers', 'ttnn') if name in sys.modules))\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          env={**os.environ, MOCK_ENV: ""})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


# --- the real ttnn wheel, on mock clusters -----------------------------------------------------------------

# ``ttlesson detect --json`` with the real ttnn on every mock cluster: tests/test_tt_topologies.py.

@pytest.mark.slow
def test_real_ttnn_without_a_device_says_no_device():
    pytest.importorskip("ttnn")
    if HAS_TT_DEVICE:
        pytest.skip("this machine has a Tenstorrent device")
    proc = run_ttlesson("detect", "--ttnn", "--json")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    report = json.loads(proc.stdout)
    assert (report["ttnn"]["asked"], report["ttnn"]["imports"], report["ttnn"]["devices"]) == (True, True, 0)
    assert report["ttnn"]["problem"] is None and report["tenstorrent"]["cards"] == []
    assert "sees no Tenstorrent device" in next(s["summary"] for s in report["sources"] if s["name"] == "ttnn")


@pytest.mark.slow
def test_real_ttnn_refusing_a_descriptor_is_reported_not_raised(tmp_path):
    pytest.importorskip("ttnn")
    bad = tmp_path / "bad.yaml"
    # A board id whose bits 36+ name no board type: UMD refuses it.
    bad.write_text((CLUSTERS / "n150.yaml").read_text().replace("1649267441665", "1001"))
    report = run_json("detect", env={MOCK_ENV: str(bad)})
    assert report["ttnn"]["imports"] is True and "No existing board type" in report["ttnn"]["problem"]
    assert report["tenstorrent"]["cards"] == [] and report["auto"]["backend"] == "torch"


def test_a_mock_path_that_is_not_a_file(tmp_path):
    pytest.importorskip("ttnn")
    report = run_json("detect", env={MOCK_ENV: str(tmp_path / "missing.yaml")})
    assert "which is not a file" in report["ttnn"]["problem"]


# --- which device made each frame --------------------------------------------------------------------------

def _render_folder(folder, makers: list[tuple[str, str]], frame_count: int | None = None):
    """A render folder whose frames (real PNGs, stored as render stores them) were made by ``makers``."""
    from PIL import Image

    from ttlesson.frames import encode_png, store_frame

    book = Manifest(storyboard="test", frame_count=frame_count or len(makers))
    for index, (backend, device) in enumerate(makers):
        record = FrameRecord(index=index, prompt=f"p{index}", negative_prompt=None, seed=index, steps=4,
                             guidance=7.5, width=64, height=64, model="tiny", backend=backend, device=device)
        store_frame(folder, book, record, encode_png(Image.new("RGB", (64, 64), (index * 40, 90, 160))))
    book.save(folder)
    return folder


def _frame_counts(origins) -> list[str]:
    """The lines of ``str(origins)`` between the folder's line and the verdict."""
    return [line.strip() for line in str(origins).splitlines()[1:-1]]


def test_verify_frames_made_on_the_cpu(tmp_path):
    folder = _render_folder(tmp_path, [("torch", "cpu")] * 3)
    origins = manifest.verify_frames(folder)
    assert _frame_counts(origins) == ["3 by torch on cpu (frames 0–2)"] and not origins.all_on_tt
    assert "No frame was made on Tenstorrent hardware." in str(origins) and "<ul>" in origins._repr_html_()
    with pytest.raises(FrameVerificationError, match=r"3 of 3 frames .* were not made on Tenstorrent hardware "
                                                     r"\(frames 0–2; e\.g\. torch on cpu\)"):
        manifest.verify_frames(folder, expect="tt")


def test_verify_frames_mixed_and_all_tt(tmp_path):
    mixed = _render_folder(tmp_path / "mixed", [("tt", "tt: n150 chip 0"), ("torch", "cuda:0 (NVIDIA H100)"),
                                                ("tt", "tt: n150 chip 0")], frame_count=4)
    origins = manifest.verify_frames(mixed)
    assert origins.not_on_tt == [1] and "1 not made yet" in _frame_counts(origins)
    with pytest.raises(FrameVerificationError, match=r"1 of 3 frames .*\(frames 1; e\.g\. torch on cuda:0"):
        manifest.verify_frames(mixed, expect="tt")
    all_tt = _render_folder(tmp_path / "tt", [("tt", "tt: n150 chip 0")] * 2)
    assert manifest.verify_frames(all_tt, expect="tt").verdict() == "Every frame was made on Tenstorrent hardware."


def test_verify_frames_bad_input(tmp_path):
    with pytest.raises(FrameVerificationError, match="has no manifest.json"):
        manifest.verify_frames(tmp_path)
    with pytest.raises(FrameVerificationError, match="expect='cuda' is not understood"):
        manifest.verify_frames(tmp_path, expect="cuda")


def test_verify_names_frames_gone_or_changed_and_no_longer_counts_them(tmp_path):
    folder = _render_folder(tmp_path, [("tt", "tt: n150 chip 0")] * 4)
    (folder / "frames" / "frame_001.png").unlink()
    (folder / "frames" / "frame_002.png").write_bytes(b"\x89PNG truncated")
    origins = manifest.verify_frames(folder)
    assert origins.frames.keys() == {0, 3} and origins.damaged == (1, 2)
    assert _frame_counts(origins) == ["2 by tt on tt: n150 chip 0 (frames 0, 3)",
                                      "2 recorded but missing or changed on disk (frames 1–2)"]
    assert origins.problem.startswith(f"{folder / 'frames' / 'frame_001.png'} is missing (and 1 more frames); run")
    with pytest.raises(FrameVerificationError, match="frame_001.png is missing"):
        manifest.verify_frames(folder, expect="tt")
    proc = run_ttlesson("verify", folder)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "frames 1–2" in proc.stdout
    assert proc.stderr.strip().count("\n") == 0 and "frame_001.png is missing" in proc.stderr


def test_verify_on_the_cli(tmp_path):
    folder = _render_folder(tmp_path, [("torch", "cpu")] * 2)
    proc = run_ttlesson("verify", folder)
    assert proc.returncode == 0 and "2 by torch on cpu (frames 0–1)" in proc.stdout
    line = one_line_error(run_ttlesson("verify", folder, "--expect", "tt"))
    assert "not made on Tenstorrent hardware" in line and "--backend tt" in line


@pytest.mark.slow
def test_asking_ttnn_leaves_nothing_in_the_current_folder(tmp_path):
    """Looking at the system mesh makes tt-metal write generated/ into the current folder: the probe runs elsewhere."""
    pytest.importorskip("ttnn")
    from helpers import ttlesson_command

    proc = subprocess.run([*ttlesson_command(), "detect", "--json"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, env={**os.environ, MOCK_ENV: str(CLUSTERS / "n300.yaml")})
    assert proc.returncode == 0 and json.loads(proc.stdout)["ttnn"]["system_mesh"] == [2, 1]
    assert list(tmp_path.iterdir()) == []
