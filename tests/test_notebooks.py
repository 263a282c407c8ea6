"""The committed notebooks: clean, thin, and free of secrets and machine paths. (nbval executes them.)"""

import re
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
CHECK_TAG = "nbval-check-output"
MAX_LOGIC_LINES = 6  # "a few calls per cell": everything else belongs in ttlesson
UNCHECKED = {"07_interactive_mode", "10_whats_next"}  # their facts are on screen only (the browser tests)


def code_cells(path):
    return [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]


def checked(cell) -> bool:
    return CHECK_TAG in cell.metadata.get("tags", [])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_only_checked_cells_hold_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    assert "widgets" not in notebook.metadata
    for cell in code_cells(path):
        assert not cell.metadata.get("widgets")
        if not checked(cell):
            assert cell.outputs == [] and cell.execution_count is None, cell.source
        for output in cell.outputs:
            assert output.output_type == "stream" and output.name == "stdout", output


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_checks_are_tags_not_comments(path):
    """nbval's cell tag marks the checked cells; no test plumbing shows in the code a learner reads."""
    for cell in code_cells(path):
        assert "NBVAL" not in cell.source, cell.source
    assert any(checked(cell) for cell in code_cells(path)) or path.stem in UNCHECKED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_token_and_no_machine_path(path):
    text = path.read_text()
    assert not re.search(r"hf_[A-Za-z0-9]{20,}", text)
    assert not re.search(r"/(root|work|tmp|home/[a-z_][a-z0-9_-]*)/", text)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_cells_are_thin(path):
    for cell in code_cells(path):
        logic = [line for line in cell.source.splitlines()
                 if line.strip() and not line.lstrip().startswith(("#", "from ", "import "))]
        # A multi-line string literal (a sample text file) counts as one line of logic.
        joined = re.sub(r'"""(.|\n)*?"""', '""', "\n".join(logic))
        assert len([line for line in joined.splitlines() if line.strip()]) <= MAX_LOGIC_LINES, cell.source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_settings_are_explained_once(path):
    """Step 1 explains the TTLESSON_* settings; the others only print them (lesson.start says where to look)."""
    text = "\n".join(cell.source for cell in nbformat.read(path, as_version=4).cells if cell.cell_type == "markdown")
    assert ("| `TTLESSON_MODEL` |" in text) == path.stem.startswith("01_")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_each_starts_with_its_step_and_the_settings(path):
    cells = nbformat.read(path, as_version=4).cells
    assert cells[0].cell_type == "markdown" and cells[0].source.startswith(f"# Step {int(path.stem[:2])} ·")
    assert re.search(r"cfg = lesson\.start\((step=\d+)?\)", code_cells(path)[0].source)


def test_the_lesson_steps_are_there():
    assert [p.stem for p in NOTEBOOKS] == [
        "01_set_up_environment", "02_hugging_face_auth", "03_video_prompts", "04_generate_frames",
        "05_collect_and_verify_frames", "06_stitch_video", "07_interactive_mode", "08_hardware_scaling",
        "09_troubleshooting", "10_whats_next"]


def test_doctor_sections_are_headings_of_the_troubleshooting_notebook():
    from ttlesson.machine import doctor

    notebook = nbformat.read(next(p for p in NOTEBOOKS if p.stem == "09_troubleshooting"), as_version=4)
    headings = {line[3:].strip() for cell in notebook.cells if cell.cell_type == "markdown"
                for line in cell.source.splitlines() if line.startswith("## ")}
    assert set(doctor.SEE.values()) <= headings
    assert doctor.TROUBLESHOOTING == "notebooks/09_troubleshooting.ipynb"
