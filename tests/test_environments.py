"""Tenstorrent machines as they are set up today, on fake directory trees: tt-metal built from source, the
tt-installer venv, the cloud image's venv, a missing driver, a chip held by another process, a container that
was given only some of the host's chips; the kernel driver's version; the Jupyter kernel for this environment.

The trees stand for /sys, /dev, /proc, /opt and the home folder (``HostPaths.under``) and for the Python
environment's prefix; everything else (ttnn's install record, ffmpeg, torch) is this machine's.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from helpers import MOCK_ENV

from ttlesson import machine
from ttlesson.machine import HostPaths
from ttlesson.setup import doctor

SD14_DEMO = "models/demos/vision/generative/stable_diffusion/wormhole/demo/demo.py"


def fake_host(root: Path, cards: list[str] = ("n150",), nodes: list[int] | None = None,
              driver: str | None = "2.4.1") -> HostPaths:
    """A host with ``cards`` listed by the kernel driver, device nodes for ``nodes`` (default: all of them)."""
    host = HostPaths.under(root)
    for number, card in enumerate(cards):
        entry = host.tenstorrent_class / f"tenstorrent!{number}"
        entry.mkdir(parents=True)
        (entry / "tt_card_type").write_text(card + "\n")
    host.device_nodes.mkdir(parents=True)
    for number in range(len(cards)) if nodes is None else nodes:
        (host.device_nodes / str(number)).write_text("")
    if driver:
        host.driver_version_file.parent.mkdir(parents=True)
        host.driver_version_file.write_text(driver + "\n")
    host.home.mkdir(parents=True, exist_ok=True)
    host.opt.mkdir(parents=True, exist_ok=True)
    return host


def checkout(root: Path, python_env: bool = False) -> Path:
    for folder in ("tt_metal", "ttnn", "models"):
        (root / folder).mkdir(parents=True)
    (root / SD14_DEMO).parent.mkdir(parents=True)
    (root / SD14_DEMO).write_text("")
    if python_env:
        make_venv(root / "python_env")
    return root


def make_venv(prefix: Path, tt_smi: bool = True) -> Path:
    (prefix / "bin").mkdir(parents=True)
    (prefix / "bin" / "python").write_text("")
    if tt_smi:
        (prefix / "bin" / "tt-smi").write_text("#!/bin/sh\nexit 1\n")
        (prefix / "bin" / "tt-smi").chmod(0o755)
    return prefix


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No tt-metal variables from the machine running the tests, and no tt-smi on PATH."""
    for name in ("TT_METAL_HOME", "TT_METAL_RUNTIME_ROOT", "TT_METAL_ARCH_NAME", MOCK_ENV, "PYTHONPATH"):
        monkeypatch.delenv(name, raising=False)
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", f"{empty}{os.pathsep}{Path(sys.executable).parent}")
    return monkeypatch


def failed(report: doctor.DoctorReport) -> dict[str, doctor.Check]:
    return {check.name: check for check in report.checks if check.status == doctor.FAIL}


def by_name(report: doctor.DoctorReport) -> dict[str, doctor.Check]:
    return {check.name: check for check in report.checks}


# --- doctor on each set-up ---------------------------------------------------------------------------------

def test_doctor_passes_in_tt_metals_source_build(tmp_path, clean_env):
    home = checkout(tmp_path / "tt-metal", python_env=True)
    clean_env.setenv("TT_METAL_HOME", str(home))
    clean_env.setenv("PYTHONPATH", str(home))
    report = doctor.run(host=fake_host(tmp_path / "host"), prefix=home / "python_env")
    assert failed(report) == {}, failed(report)
    checks = by_name(report)
    assert checks["Python environment"].detail == f"tt-metal source build ({home / 'python_env'})"
    assert checks["tt-metal python_env"].detail == f"active ({home / 'python_env'})"
    assert checks["kernel driver"].detail == "tt-kmd 2.4.1"
    assert checks["tt-smi"].detail.startswith(f"{home / 'python_env' / 'bin' / 'tt-smi'} (in ")  # not on PATH


def test_doctor_passes_in_the_tt_installer_venv(tmp_path, clean_env):
    host = fake_host(tmp_path / "host", ["p300c", "p300c", "p300c", "p300c"])  # a QuietBox 2
    venv = make_venv(host.home / ".tenstorrent-venv")
    home = checkout(tmp_path / "tt-metal")  # the model code: a checkout, no python_env
    clean_env.setenv("TT_METAL_HOME", str(home))
    clean_env.setenv("TT_METAL_ARCH_NAME", "blackhole")
    report = doctor.run(host=host, prefix=venv)
    assert failed(report) == {}, failed(report)
    checks = by_name(report)
    assert checks["Python environment"].detail == f"tt-installer venv ({venv})"
    assert checks["tt-metal python_env"].detail.startswith("not needed: this is the tt-installer venv")
    assert "MESH_DEVICE=P300x2" in checks["Tenstorrent device"].detail
    assert checks["tt-smi"].detail.startswith(str(venv / "bin" / "tt-smi"))
    assert checks["PYTHONPATH"].status == doctor.WARN  # ttlesson finds the checkout through TT_METAL_HOME


def test_doctor_passes_in_the_cloud_images_venv_with_a_runtime_root(tmp_path, clean_env):
    host = fake_host(tmp_path / "host", ["n300"] * 4)
    venv = make_venv(host.opt / "venv-metal")
    home = checkout(tmp_path / "tt-metal")
    clean_env.setenv("TT_METAL_RUNTIME_ROOT", str(home))  # newer tt-metal: no TT_METAL_HOME at all
    report = doctor.run(host=host, prefix=venv)
    assert failed(report) == {}, failed(report)
    checks = by_name(report)
    assert checks["Python environment"].detail == f"cloud image venv ({venv}), TT_METAL_RUNTIME_ROOT={home}"
    assert checks["TT_METAL_HOME"].detail == f"{home} (found through TT_METAL_RUNTIME_ROOT), SD 1.4 demo in " \
                                             "models/demos/vision/generative/stable_diffusion/wormhole"
    assert checks["TT_METAL_RUNTIME_ROOT"].status == doctor.OK
    assert "MESH_DEVICE=T3K" in checks["Tenstorrent device"].detail


def test_doctor_without_the_kernel_driver(tmp_path, clean_env):
    host = fake_host(tmp_path / "host", cards=[], driver=None)
    home = checkout(tmp_path / "tt-metal", python_env=True)
    clean_env.setenv("TT_METAL_HOME", str(home))
    fails = failed(doctor.run(host=host, prefix=home / "python_env"))
    assert set(fails) == {"Tenstorrent device", "kernel driver"}
    assert fails["kernel driver"].detail == "not loaded (/sys/module/tenstorrent/version is missing)"
    assert "tt-kmd" in fails["kernel driver"].fix and "modprobe tenstorrent" in fails["kernel driver"].fix


def test_doctor_when_another_process_holds_the_chip(tmp_path, clean_env):
    host = fake_host(tmp_path / "host", ["n150"])
    pids = host.driver_proc / "0" / "pids"
    pids.parent.mkdir(parents=True)
    pids.write_text(f"4242\n{os.getpid()}\n")  # ours does not count
    (host.proc / "4242").mkdir()
    (host.proc / "4242" / "cmdline").write_bytes(b"python3\0-m\0pytest\0models/demos/demo.py\0")
    home = checkout(tmp_path / "tt-metal", python_env=True)
    clean_env.setenv("TT_METAL_HOME", str(home))
    fails = failed(doctor.run(host=host, prefix=home / "python_env"))
    assert set(fails) == {"devices free"}
    assert fails["devices free"].detail == ("/dev/tenstorrent/0 is held by pid 4242 (python3 -m pytest "
                                            "models/demos/demo.py)")
    assert fails["devices free"].fix.startswith("let that run finish or stop it (kill 4242)")
    assert "tt-smi -r" in fails["devices free"].fix


def test_another_python_is_a_warning_with_the_way_out(tmp_path, clean_env):
    check = doctor.check_environment(machine.recognise(tmp_path / "somewhere", HostPaths.under(tmp_path)))
    assert check.status == doctor.WARN and "ttlesson kernel install" in check.fix


# --- detection on the same trees ---------------------------------------------------------------------------

def test_a_container_counts_only_the_chips_it_was_given(tmp_path, clean_env):
    host = fake_host(tmp_path, ["p150a"] * 4, nodes=[0, 2])  # docker run --device /dev/tenstorrent/0 and /2
    report = machine.detect(host=host)
    assert report.total_chips == 2 and [card.seen_as for card in report.cards] == ["tenstorrent!0", "tenstorrent!2"]
    summary = report.sources[0].summary
    assert "tenstorrent!1, tenstorrent!3 also listed, but without a node in" in summary and "container" in summary
    none_given = machine.detect(host=fake_host(tmp_path / "none", ["n150"], nodes=[]))
    assert none_given.cards == [] and "was not given the devices" in none_given.sources[0].summary


def test_detect_reports_the_driver_the_holders_and_the_environment(tmp_path, clean_env):
    host = fake_host(tmp_path, ["n300"])
    pids = host.driver_proc / "0" / "pids"
    pids.parent.mkdir(parents=True)
    pids.write_text("77\n")
    report = machine.detect(host=host)
    data = json.loads(report.to_json())
    assert data["kernel_driver"] == {"version": "2.4.1", "holders": [{"chip": 0, "pid": 77, "user": "",
                                                                     "command": "exited, or not visible from here"}]}
    assert data["environment"]["kind"] == machine.recognise().kind
    text = str(report)
    assert "kernel driver:" in text and "tt-kmd 2.4.1" in text
    assert "Note: /dev/tenstorrent/0 is held by pid 77" in text


@pytest.mark.parametrize("where, kind", [
    ("tt-metal/python_env", machine.SOURCE_BUILD), ("host/home/.tenstorrent-venv", machine.INSTALLER),
    ("host/opt/venv-metal", machine.CLOUD), ("elsewhere/.venv", machine.OTHER),
])
def test_each_environment_is_recognised(tmp_path, clean_env, where, kind):
    checkout(tmp_path / "tt-metal")
    prefix = make_venv(tmp_path / where, tt_smi=False)
    assert machine.recognise(prefix, HostPaths.under(tmp_path / "host")).kind == kind


def test_tt_smi_is_found_in_any_of_the_environments(tmp_path, clean_env):
    host = HostPaths.under(tmp_path)
    assert machine.find_tt_smi(host) == (None, False)
    make_venv(host.opt / "venv-metal")
    assert machine.find_tt_smi(host) == (host.opt / "venv-metal" / "bin" / "tt-smi", False)
    make_venv(host.home / ".tenstorrent-venv")
    assert machine.find_tt_smi(host)[0] == host.home / ".tenstorrent-venv" / "bin" / "tt-smi"  # searched first


# --- the Jupyter kernel ------------------------------------------------------------------------------------

def test_kernel_install_registers_this_python_with_the_tt_metal_variables(tmp_path, clean_env):
    pytest.importorskip("ipykernel")
    from ttlesson.setup.kernel import install

    for name in ("TTLESSON_CACHE", "TTLESSON_WORKDIR"):
        clean_env.delenv(name, raising=False)
    clean_env.setenv("TT_METAL_HOME", "/opt/tt-metal")
    clean_env.setenv("PYTHONPATH", "/opt/tt-metal")
    clean_env.setenv("HF_HOME", "/data/hf")
    clean_env.setenv("UNRELATED_SECRET", "not carried")
    kernel = install("ttlesson-test", prefix=str(tmp_path / "prefix"))
    spec = json.loads((kernel.folder / "kernel.json").read_text())
    assert spec["argv"][0] == sys.executable and "ipykernel_launcher" in " ".join(spec["argv"])
    assert spec["env"] == {"TT_METAL_HOME": "/opt/tt-metal", "PYTHONPATH": "/opt/tt-metal", "HF_HOME": "/data/hf"}
    assert spec["display_name"].startswith(f"ttlesson ({machine.recognise().kind}: ")
    assert kernel.folder == tmp_path / "prefix" / "share" / "jupyter" / "kernels" / "ttlesson-test"
    assert "Kernel > Change Kernel" in str(kernel)


def test_kernel_install_on_the_cli_and_bad_names(tmp_path):
    pytest.importorskip("ipykernel")
    from helpers import call_cli, one_line_error

    from ttlesson.setup.kernel import default_names

    assert default_names(Path("/home/u/.venv"))[0] == "ttlesson-venv"
    line = one_line_error(call_cli("kernel", "install", "--name", "bad name!", "--sys-prefix"))
    assert line.startswith("ttlesson kernel: error: Kernel name 'bad name!' is not usable")


def test_the_kernel_report_says_whether_ttnn_imports(clean_env):
    report = machine.kernel_report(try_import=machine.ttnn_install_info().installed)
    assert report.environment.python == Path(sys.executable)
    if report.ttnn_installed:
        assert report.ttnn_imports is True and report.verdict.startswith("This kernel can import ttnn, so")
    else:
        assert "ttlesson kernel install" in report.verdict
    assert "<table>" in report._repr_html_()
