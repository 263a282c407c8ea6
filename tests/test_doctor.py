"""``ttlesson doctor``: this machine (no Tenstorrent device) shows the expected fails with their fixes, and
each check says ok / warn / fail for the set-ups it meets."""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

import pytest
from helpers import run_json, run_ttlesson
from machine_helpers import HAS_TT_DEVICE

from ttlesson import machine
from ttlesson.backends.tt.metal import SD14_FOLDERS
from ttlesson.machine import doctor

NO_TT_METAL = {"TT_METAL_HOME": "", "TT_METAL_ARCH_NAME": "", "PYTHONPATH": ""}


def _checks(report: dict) -> dict[str, dict]:
    return {check["name"]: check for check in report["checks"]}


@pytest.mark.skipif(HAS_TT_DEVICE, reason="this machine has a Tenstorrent device")
def test_doctor_on_this_machine_shows_the_expected_fails():
    report = run_json("doctor", env=NO_TT_METAL)
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
    cards = [machine.Card("p150a" if arch == "blackhole" else "n150", arch, 1, "kernel driver") for arch in arches]
    check = doctor.check_arch_name(cards)
    assert check.status == status
    if status == "fail":
        assert check.fix in ("export TT_METAL_ARCH_NAME=blackhole", "unset TT_METAL_ARCH_NAME")


def test_device_check_with_cards(tmp_path):
    cards, answer = machine.read_kernel_driver(tmp_path)
    assert doctor.check_tenstorrent_device(cards, answer).status == "fail"
    check = doctor.check_tenstorrent_device([machine.Card("n300", "wormhole", 2, "kernel driver")] * 4, answer)
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
    report = doctor.DoctorReport([doctor.Check("ffmpeg", "ok", "/usr/bin/ffmpeg"),
                                  doctor.Check("TT_METAL_HOME", "fail", "not set", "export <x>")])
    page = report._repr_html_()
    assert "export &lt;x&gt;" in page and "1 ok, 0 warn, 1 fail" in page and not report.ok
