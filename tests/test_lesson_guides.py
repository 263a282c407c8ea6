"""The lesson's guidance around the frames: its own commands by hand, per-board expectations and the long-run
warning, troubleshooting sections of the checklist, and what SD 3.5 Large needs."""

from __future__ import annotations

import shlex
import sys

import pytest

from ttlesson import machine, storyboard
from ttlesson.models import REGISTRY
from ttlesson.notebook import by_hand, next_steps
from ttlesson.notebook.widgets import NotebookProgress
from ttlesson.render import render
from ttlesson.setup import doctor
from ttlesson.tenstorrent import speeds
from ttlesson.tenstorrent.checkout import SD14_FOLDERS


def test_step1_fills_in_the_checkout_and_blackhole(monkeypatch, tmp_path):
    monkeypatch.setenv("TT_METAL_HOME", str(tmp_path))
    monkeypatch.setattr(by_hand, "_blackhole_here", lambda: True)
    text = str(by_hand.step1())
    assert f"source {tmp_path}/python_env/bin/activate" in text and f"export TT_METAL_HOME={tmp_path}" in text
    assert "\nexport TT_METAL_ARCH_NAME=blackhole" in text and "tt-smi -s | grep board_type" in text
    monkeypatch.setattr(by_hand, "_blackhole_here", lambda: False)
    assert "\n# export TT_METAL_ARCH_NAME=blackhole" in str(by_hand.step1())


def test_step2_says_which_model_needs_the_login_once():
    guide = by_hand.step2()
    assert guide.commands.startswith("hf auth login") and "hf auth whoami" in guide.commands
    notes = " ".join(guide.notes)
    assert "optional for SD 1.4 and needed for SD 3.5 Large" in notes and "gated" not in notes


def test_offline_advice_offers_the_tiny_model_only_for_sd1_models(monkeypatch, tmp_path):
    from ttlesson.setup import hf

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    assert "--model tiny" in str(hf.model_access("sd14"))
    assert "tiny" not in str(hf.model_access("sd35-large"))


@pytest.mark.parametrize("layout", ["older", "current"])
def test_step4_names_the_demo_where_this_checkout_has_it(monkeypatch, tmp_path, layout):
    demo = tmp_path / SD14_FOLDERS[layout] / "demo"
    demo.mkdir(parents=True)
    (demo / "demo.py").write_text("")
    monkeypatch.setenv("TT_METAL_HOME", str(tmp_path))
    guide = by_hand.step4(tmp_path / "work folder")
    assert f"{SD14_FOLDERS[layout]}/demo/demo.py::test_demo" in guide.commands
    assert shlex.quote(str(tmp_path / "work folder" / "prompts.json")) in guide.commands
    notes = " ".join(guide.notes)
    assert f"({REGISTRY['sd14'].download_size}, not the lesson's" in notes and "compiles the kernels" in notes
    assert "--input-path does not reach it" in notes


def test_step4_without_a_checkout(monkeypatch, tmp_path):
    monkeypatch.setenv("TT_METAL_HOME", str(tmp_path / "none"))
    assert "No tt-metal checkout with the demo" in by_hand.step4(tmp_path).notes[0]


def test_step6_shows_the_lessons_command_and_the_one_that_ran(rendered, tmp_path):
    from ttlesson.video import stitch

    info = stitch(rendered[0].out_dir, tmp_path / "v.mp4")
    guide = by_hand.step6(info, tmp_path)
    assert "-pattern_type glob -i 'frames/frame_*.png'" in guide.commands
    assert "frame_%03d.png" in guide.ran and guide.ran.endswith(" v.mp4 -y") and ".partial" not in guide.ran
    assert "<pre" in guide._repr_html_()


def test_step7_says_which_releases_have_the_interactive_demo():
    guide = by_hand.step7()
    assert guide.commands.endswith("demo/demo.py::test_interactive_demo")
    assert any("only in older tt-metal releases" in note for note in guide.notes)


def test_per_board_table_shows_the_published_numbers():
    table = speeds.per_board()
    rows = {row.board: row for row in table.rows}
    assert rows["N150"].published == 4.83 and rows["N300"].published_text == "4.83 s (the N150's)"
    assert "The lesson's text says 30–45 s." in rows["N150"].full_note
    page = table._repr_html_()
    assert "published by tt-metal" in page and "the demo uses one" in page and "not measured by this project" in page
    assert "×</td>" not in page  # no ratio column


@pytest.mark.parametrize("seconds, text", [(0.34, "under a second"), (0.6, "1 s"), (45, "45 s"), (75, "1 min 15 s"),
                                           (600, "10 min"), (5400, "1 h 30 min")])
def test_durations(seconds, text):
    assert speeds.duration(seconds) == text


def test_long_run_warning_only_when_long():
    assert speeds.long_run_warning(0.05, 10, 10, "the CPU") is None  # the tiny model: 5 s
    warning = speeds.long_run_warning(4.0, 50, 10, "the CPU")  # SD 1.4 on two cores
    assert warning.startswith("This will take about 33 min on the CPU: the first step took 4.0 s")
    assert "finished frames are kept" in warning and "--steps 20" in warning  # a terminal's lever


def test_progress_displays_say_a_long_run_after_its_first_step(monkeypatch, tmp_path, tiny_backend):
    monkeypatch.setattr(speeds, "LONG_RUN_SECONDS", 0.0)  # every render counts as long here
    bar = NotebookProgress(gallery=False)
    board = storyboard.loads('["one", "two"]')
    render(board, tmp_path, model="tiny", backend=tiny_backend, steps=3, on_event=bar)
    assert bar.warning.value.startswith('<span style="color:#b26a00"><b>This will take about')
    assert "2 frames × 3 steps" in bar.warning.value


def test_no_long_run_warning_for_a_quick_render(tmp_path, tiny_backend):
    bar = NotebookProgress(gallery=False)
    render(storyboard.loads('["one"]'), tmp_path, model="tiny", backend=tiny_backend, steps=2, on_event=bar)
    assert bar.warning.value == ""


def test_doctor_lines_point_into_the_troubleshooting_notebook():
    report = doctor.run(tt=True)
    names = {check.name: check for check in report.checks}
    assert names["frames made on"].see == doctor.SLOW and names["memory"].see == doctor.MEMORY
    assert names["TT_METAL_ARCH_NAME"].see == doctor.DISPATCH and names["tt-smi"].see == doctor.RESET
    assert names["Hugging Face"].see_link == "notebooks/09_troubleshooting.ipynb#Hugging-Face-login"
    text = str(report)
    for check in report.checks:
        if check.status != "ok" and check.see:
            assert f'see: notebooks/09_troubleshooting.ipynb, "{check.see}"' in text
    assert "href='09_troubleshooting.ipynb#Slow-generation'" in report._repr_html_()
    section = report.section(doctor.MODULES)
    assert {check.name for check in section.checks} >= {"Python", "PYTHONPATH", "tt-metal models package"}
    assert report.verdict() not in section._repr_html_() and report.verdict() not in str(section)


@pytest.mark.skipif(machine.auto_backend() == "tt", reason="this machine makes frames on Tenstorrent hardware")
def test_frames_made_on_the_cpu_is_a_warning_naming_the_work_folder_frames(monkeypatch, tmp_path, tiny_backend):
    monkeypatch.setenv("TTLESSON_WORKDIR", str(tmp_path))
    render(storyboard.loads('["one"]'), tmp_path, model="tiny", backend=tiny_backend, steps=2)
    check = doctor.check_frames_made_on([])
    assert check.status == "warn" and "not Tenstorrent hardware: no Tenstorrent device" in check.detail
    assert check.detail.endswith("the work folder's frames were made on cpu")


def test_python_line_names_the_interpreter_and_its_environment():
    check = doctor.check_python()
    assert check.status == "ok" and sys.executable in check.detail
    assert ("virtual environment" in check.detail) == (sys.prefix != sys.base_prefix)


def test_models_package_must_come_from_the_checkout(monkeypatch, tmp_path):
    home = tmp_path / "tt-metal"
    (home / "models").mkdir(parents=True)
    (home / "models" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path / "nowhere"))
    monkeypatch.delenv("PYTHONPATH", raising=False)
    missing = doctor.check_tt_metal_models(home)  # ttlesson finds the checkout itself; the pytest demo would not
    assert missing.status == "warn" and "ModuleNotFoundError" in missing.detail
    monkeypatch.setenv("PYTHONPATH", str(home))  # what the lesson's export does, for Pythons started from here
    assert doctor.check_tt_metal_models(home).status == "ok"
    monkeypatch.delenv("PYTHONPATH")
    other = tmp_path / "other"
    (other / "models").mkdir(parents=True)
    (other / "models" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(other))
    shadowed = doctor.check_tt_metal_models(home)
    assert shadowed.status == "fail" and "another package of that name comes first" in shadowed.detail
    monkeypatch.syspath_prepend(str(home))
    assert doctor.check_tt_metal_models(home).status == "ok"
    assert doctor.check_tt_metal_models(None).status == "warn"


@pytest.mark.parametrize("total, available, status", [(64, 40, "ok"), (64, 3, "warn"), (4, 3, "fail")])
def test_memory_against_the_models_need(monkeypatch, total, available, status):
    monkeypatch.setattr(doctor, "_memory_gib", lambda: (float(total), float(available)))
    check = doctor.check_memory("sd14")
    assert check.status == status and "sd14 needs about 6 GiB" in check.detail
    if status == "warn":
        assert "Shut Down All Kernels" in check.fix


def test_sd35_plan_on_this_machine_says_why_not(monkeypatch):
    report = machine.detect(ttnn=False)
    plan = next_steps.sd35_plan(report)
    if report.tt_device:
        pytest.skip("this machine has a Tenstorrent device")
    assert not plan.runnable and plan.where == ""
    assert plan.reasons[0].startswith("There is no Tenstorrent device here")
    needs = " ".join(plan.needs)
    assert "a T3K (2×4)" in needs and "gated" in needs and "N300 are too small" in needs
    assert "cannot run here" in str(plan) and "<ul>" in plan._repr_html_()


def _report(sysfs):
    return machine.detect(sysfs_root=sysfs, ttnn=False)


@pytest.mark.parametrize("cards, runnable, system", [
    (["n300"] * 4, True, "the T3K (opened as a 2×4 mesh)"),
    (["n150"], False, "not on this N150: 1 wormhole_b0 chip"),
    (["n300"], False, "not on this N300: 2 wormhole_b0 chips"),
])
def test_sd35_plan_by_mesh(monkeypatch, tmp_path, cards, runnable, system):
    from machine_helpers import make_sysfs

    from ttlesson.setup import hf

    monkeypatch.setattr(hf, "model_access", lambda model: hf.ModelAccess(model, "x", True, "list", "complete",
                                                                           True, False))
    report = _report(make_sysfs(tmp_path, cards))
    plan = next_steps.sd35_plan(report)
    assert plan.runnable is runnable
    assert system in (plan.where if runnable else plan.reasons[0])


def test_try_sd35_renders_nothing_where_it_cannot_run(tmp_path):
    from ttlesson.notebook import lesson, settings

    plan = next_steps.SD35Plan(False, "", ["no mesh"], ["a mesh"])
    assert lesson.try_sd35(settings.current(), plan=plan) is plan
