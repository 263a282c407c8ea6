"""``ttlesson doctor``: on a machine without a Tenstorrent card the Tenstorrent checks are one n/a line and nothing
fails; with a card (or ``--tt``) they show the expected fails with their fixes; each check says ok / warn / fail for
the set-ups it meets."""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

import pytest
from helpers import MOCK_ENV, run_json, run_ttlesson
from machine_helpers import HAS_TT_DEVICE, make_sysfs

from ttlesson import machine
from ttlesson.machine import HostPaths
from ttlesson.setup import doctor
from ttlesson.tenstorrent import boards
from ttlesson.tenstorrent.checkout import SD14_FOLDERS

NO_TT_METAL = {"TT_METAL_HOME": "", "TT_METAL_ARCH_NAME": "", "PYTHONPATH": ""}
no_tt_here = pytest.mark.skipif(HAS_TT_DEVICE, reason="this machine has a Tenstorrent device")


def _checks(report: dict) -> dict[str, dict]:
    return {check["name"]: check for check in report["checks"]}


@pytest.fixture
def no_tt_metal(monkeypatch):
    """None of tt-metal's variables from the machine running the tests."""
    for name in ("TT_METAL_HOME", "TT_METAL_RUNTIME_ROOT", "TT_METAL_ARCH_NAME", "PYTHONPATH", MOCK_ENV):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def _host(root: Path, cards: list[str] = (), on_pci_bus: bool = False) -> HostPaths:
    """A host whose kernel driver (loaded) lists ``cards``, each with its /dev node; ``on_pci_bus``: a Tenstorrent
    device on the PCI bus. It always has one other PCI device, as every machine does."""
    host = HostPaths.under(root)
    if cards:
        make_sysfs(host.sys, cards)
        host.device_nodes.mkdir(parents=True)
        for number in range(len(cards)):
            (host.device_nodes / str(number)).write_text("")
        host.driver_version_file.parent.mkdir(parents=True)
        host.driver_version_file.write_text("2.4.1\n")
    for address, vendor in [("0000:00:00.0", "0x8086"), *([("0000:01:00.0", "0x1e52")] if on_pci_bus else [])]:
        (host.sys / "bus" / "pci" / "devices" / address).mkdir(parents=True)
        (host.sys / "bus" / "pci" / "devices" / address / "vendor").write_text(vendor + "\n")
    return host


def _fail_lines(report: doctor.DoctorReport) -> list[str]:
    """The failed lines as the text form and the HTML table show them."""
    text = [line for line in str(report).splitlines() if line.startswith("[fail]")]
    return text + [row for row in report._repr_html_().split("<tr>") if ">fail</td>" in row]


# --- a machine without a Tenstorrent card ------------------------------------------------------------------

def test_without_a_card_the_tenstorrent_checks_are_one_line_and_nothing_fails(tmp_path, no_tt_metal):
    report = doctor.run(host=_host(tmp_path / "host"), prefix=tmp_path / "venv")
    assert _fail_lines(report) == [] and report.ok and not report.tenstorrent
    (line,) = [check for check in report.checks if check.status == doctor.NOT_APPLICABLE]
    assert line == report.checks[0] and line.name == "Tenstorrent set-up" and not line.fix and not line.see
    assert f"These {len(doctor.TENSTORRENT_ONLY)} checks" in line.detail and "ttlesson doctor --tt" in line.detail
    assert not {check.name for check in report.checks} & doctor.TENSTORRENT_ONLY
    text, page = str(report), report._repr_html_()
    assert text.startswith("[n/a ] Tenstorrent set-up: not checked: no Tenstorrent card on this machine")
    assert "<td style='color:#757575;font-weight:bold'>n/a</td>" in page
    assert report.verdict().endswith(": no Tenstorrent card here, so the lesson runs on the CPU/GPU fallback "
                                     "(--backend torch), and it is ready.")
    assert "fix the failed lines" not in text + page
    assert report.to_dict()["tenstorrent_checked"] is False


def test_with_a_card_and_no_tt_metal_the_same_checks_fail(tmp_path, no_tt_metal):
    report = doctor.run(host=_host(tmp_path / "host", ["n150"]), prefix=tmp_path / "venv")
    checks = {check.name: check for check in report.checks}
    assert report.tenstorrent and set(checks) >= doctor.TENSTORRENT_ONLY and "Tenstorrent set-up" not in checks
    assert checks["Tenstorrent device"].status == "ok" and checks["TT_METAL_HOME"].status == "fail"
    assert any(line.startswith("[fail] TT_METAL_HOME: not set") for line in _fail_lines(report))
    assert any("TT_METAL_HOME" in row for row in _fail_lines(report))  # the HTML table's row
    assert not report.ok and "fix the failed lines to run the lesson on Tenstorrent hardware" in report.verdict()


@pytest.mark.parametrize("sign", ["on the PCI bus", "TT_METAL_ARCH_NAME", "TT_METAL_HOME", "doctor --tt"])
def test_a_tenstorrent_machine_whose_card_does_not_show_still_fails_it(tmp_path, no_tt_metal, sign):
    """A card on the PCI bus without tt-kmd, or a tt-metal set-up: the card is missing, not irrelevant."""
    if sign == "TT_METAL_ARCH_NAME":
        no_tt_metal.setenv("TT_METAL_ARCH_NAME", "blackhole")
    if sign == "TT_METAL_HOME":
        no_tt_metal.setenv("TT_METAL_HOME", str(tmp_path / "tt-metal"))
    report = doctor.run(host=_host(tmp_path / "host", on_pci_bus=sign == "on the PCI bus"), prefix=tmp_path / "venv",
                        tt=sign == "doctor --tt")
    assert report.tenstorrent and {check.name for check in report.checks} >= doctor.TENSTORRENT_ONLY
    fails = {check.name for check in report.checks if check.status == "fail"}
    assert {"Tenstorrent device", "kernel driver"} <= fails


def test_sections_without_a_card_show_the_one_line(tmp_path, no_tt_metal):
    """Notebook 09 shows each section: one whose checks all apply only to a card shows the n/a line."""
    report = doctor.run(host=_host(tmp_path / "host"), prefix=tmp_path / "venv")

    def names(see: str) -> list[str]:
        return [check.name for check in report.section(see).checks]

    assert doctor.TENSTORRENT_SECTIONS == {doctor.SLOW, doctor.RESET, doctor.MODULES, doctor.DISPATCH}
    assert names(doctor.RESET) == names(doctor.DISPATCH) == ["Tenstorrent set-up"]
    assert names(doctor.SLOW) == ["Tenstorrent set-up", "frames made on"]
    assert {"Tenstorrent set-up", "Python", "torch"} <= set(names(doctor.MODULES))
    assert names(doctor.MEMORY) == ["memory"]
    section = report.section(doctor.DISPATCH)
    assert str(section).startswith("[n/a ] Tenstorrent set-up: not checked") and report.verdict() not in str(section)
    assert "Tenstorrent set-up" in section._repr_html_()


@no_tt_here
def test_doctor_on_this_machine_exits_0_with_nothing_failed():
    proc = run_ttlesson("doctor", env=NO_TT_METAL)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("[n/a ] Tenstorrent set-up: not checked") and "[fail]" not in proc.stdout
    assert proc.stdout.splitlines()[-1].endswith("the lesson runs on the CPU/GPU fallback (--backend torch), and it "
                                                 "is ready.")


@no_tt_here
def test_doctor_tt_on_this_machine_shows_the_expected_fails():
    report = run_json("doctor", "--tt", env=NO_TT_METAL)
    checks = _checks(report)
    assert report["ok"] is False and report["counts"]["fail"] >= 2
    assert checks["Tenstorrent device"]["status"] == "fail" and "tt-kmd" in checks["Tenstorrent device"]["fix"]
    home = checks["TT_METAL_HOME"]
    assert home["status"] == "fail" and home["detail"].startswith("not set, and no tt-metal checkout found")
    assert "git clone" in home["fix"] and "export TT_METAL_HOME=" in home["fix"]
    assert checks["tt-metal python_env"]["status"] == "warn" and checks["PYTHONPATH"]["status"] == "warn"
    assert checks["ffmpeg"]["status"] == "ok" and checks["torch"]["status"] == "ok"
    assert all(check["fix"] for check in report["checks"] if check["status"] != "ok")
    assert "the CPU fallback (--backend torch) works without them" in report["summary"]
    assert report["tenstorrent_checked"] is True


def test_doctor_text_form_and_exit_status():
    proc = run_ttlesson("doctor", env=NO_TT_METAL)
    assert proc.returncode == (0 if "0 fail" in proc.stdout else 1), proc.stderr
    lines = proc.stdout.splitlines()
    for number, line in enumerate(lines):
        if line.startswith("[fail]"):
            assert lines[number + 1].startswith("       fix: ")
    assert lines[-1].endswith(".") and " ok, " in lines[-1]


def _checkout(root: Path, sd_location: str | None = SD14_FOLDERS["current"]) -> Path:
    for folder in ("tt_metal", "ttnn"):
        (root / folder).mkdir(parents=True)
    if sd_location:
        demo = root / sd_location / "demo"
        demo.mkdir(parents=True)
        (demo / "demo.py").write_text("")
    return root


@pytest.mark.parametrize("location", list(SD14_FOLDERS.values()))
def test_tt_metal_home_with_the_sd14_demo_in_either_place(tmp_path, location):
    check = doctor.check_tt_metal_home(_checkout(tmp_path, location))
    assert check.status == "ok" and location in check.detail


def test_tt_metal_home_problems(tmp_path):
    assert "not a tt-metal checkout" in doctor.check_tt_metal_home(tmp_path).detail
    old = doctor.check_tt_metal_home(_checkout(tmp_path / "old", None))
    assert old.status == "fail" and "no Stable Diffusion 1.4 demo" in old.detail and "pull" in old.fix


def test_python_env_and_pythonpath(tmp_path, monkeypatch):
    home = _checkout(tmp_path)
    missing = doctor.check_python_env(home)
    assert (missing.status, missing.fix) == ("fail", f"cd {home} && ./create_venv.sh")
    env = home / "python_env"
    (env / "bin").mkdir(parents=True)
    (env / "bin" / "python").write_text("")
    inactive = doctor.check_python_env(home)
    assert inactive.status == "fail" and f"source {env}/bin/activate" in inactive.fix
    monkeypatch.setattr(sys, "prefix", str(env))
    assert doctor.check_python_env(home).status == "ok"

    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    assert doctor.check_pythonpath(home).fix == "export PYTHONPATH=$TT_METAL_HOME:$PYTHONPATH"
    monkeypatch.setenv("PYTHONPATH", f"/elsewhere:{home}/")
    assert doctor.check_pythonpath(home).status == "ok"


@pytest.mark.parametrize("arches, value, status", [
    (["blackhole"], "", "fail"), (["blackhole"], "blackhole", "ok"), (["wormhole"], "blackhole", "fail"),
    (["wormhole"], "", "ok"), ([], "", "ok"),
])
def test_arch_name(monkeypatch, arches, value, status):
    monkeypatch.setenv("TT_METAL_ARCH_NAME", value)
    cards = [boards.Card("p150a" if arch == "blackhole" else "n150", arch, 1, "kernel driver") for arch in arches]
    check = doctor.check_arch_name(cards)
    assert check.status == status
    if status == "fail":
        assert check.fix in ("export TT_METAL_ARCH_NAME=blackhole", "unset TT_METAL_ARCH_NAME")
    if "blackhole" not in arches + [value]:
        assert check.detail == "unset (not needed: no Blackhole card)"


def test_device_check_with_cards(tmp_path):
    cards, answer = machine.read_kernel_driver(tmp_path)
    assert doctor.check_tenstorrent_device(cards, answer).status == "fail"
    check = doctor.check_tenstorrent_device([boards.Card("n300", "wormhole", 2, "kernel driver")] * 4, answer)
    assert check.status == "ok" and "MESH_DEVICE=T3K" in check.detail


@pytest.mark.parametrize("version, requirement, expected", [
    ("2.15.0+cu132", "torch>=2.1", True), ("2.0.1", "torch>=2.1", False), ("0.35.1", "diffusers<1,>=0.30", True),
    ("1.0.0", "diffusers<1,>=0.30", False), ("0.30", "diffusers<1,>=0.30", True), ("6.0.0", "transformers<6,>=4.45",
                                                                                   False),
    ("0.36.0.dev0", "diffusers<1,>=0.30", True), ("unknown", "torch>=2.1", True),
])
def test_version_ranges(version, requirement, expected):
    assert doctor.satisfies(version, requirement) is expected


def test_missing_or_out_of_range_package(monkeypatch):
    def version(name):
        if name == "diffusers":
            raise metadata.PackageNotFoundError(name)
        return "9.9" if name == "transformers" else metadata.distribution(name).version

    monkeypatch.setattr(doctor.metadata, "version", version)
    missing = doctor.check_package("diffusers")
    assert missing.status == "fail" and missing.fix.startswith("pip install 'diffusers")
    too_new = doctor.check_package("transformers")
    assert too_new.status == "fail" and "but ttlesson needs transformers" in too_new.detail


def test_work_folder_that_does_not_exist_yet(tmp_path, monkeypatch):
    monkeypatch.setenv("TTLESSON_WORKDIR", str(tmp_path / "not" / "yet"))
    check = doctor.check_work_disk()
    assert check.status in ("ok", "warn", "fail") and str(tmp_path / "not" / "yet") in check.detail


def test_html_form(monkeypatch):
    report = doctor.DoctorReport([doctor.Check("Python", "ok", "3.12", see=doctor.MODULES),
                                  doctor.Check("TT_METAL_HOME", "fail", "not set", "export <x>", see=doctor.MODULES)])
    page = report._repr_html_()
    assert "export &lt;x&gt;" in page and "1 ok, 0 warn, 1 fail" in page and not report.ok
    assert page.count("href='09_troubleshooting.ipynb#Module-not-found'") == 1  # on the failed line only
    all_ok = doctor.DoctorReport(report.checks[:1])._repr_html_()
    assert "<th>help</th>" not in all_ok and "href=" not in all_ok
