"""The committed notebooks: clean, thin, and free of secrets and machine paths. (nbval executes them.)"""

import re
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
CHECK_TAG = "nbval-check-output"
MAX_LOGIC_LINES = 6  # "a few calls per cell": everything else belongs in ttlesson


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
    """nbval's cell tag marks the checked cells; no test plumbing shows in the code a learner reads, and a checked
    cell is one the learner reads too (its source is not folded away)."""
    for cell in code_cells(path):
        assert "NBVAL" not in cell.source, cell.source
        if checked(cell):
            assert not cell.metadata.get("jupyter", {}).get("source_hidden"), cell.source


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
def test_the_settings_are_shown_as_a_table_once(path):
    """Step 1 shows the TTLESSON_* settings as a table (a cell that is just ``cfg``); every notebook's first cell
    says them in one line (lesson.start)."""
    shown = any(cell.source.strip() == "cfg" for cell in code_cells(path))
    assert shown == path.stem.startswith("01_")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_each_starts_with_its_step_and_the_settings(path):
    step = int(path.stem[:2])
    cells = nbformat.read(path, as_version=4).cells
    assert cells[0].cell_type == "markdown" and cells[0].source.startswith(f"# Step {step} ·")
    assert f"cfg = lesson.start(step={step})" in code_cells(path)[0].source


MAX_WORDS = 2_800  # the lesson itself is about 1,330 words


def markdown(path) -> str:
    return "\n".join(cell.source for cell in nbformat.read(path, as_version=4).cells if cell.cell_type == "markdown")


def sentences(text: str) -> set[str]:
    """The text's sentences and headings of three words or more, lower-cased with whitespace and markup squashed."""
    text = re.sub(r"^#+ ", "", text, flags=re.M)
    parts = re.split(r"(?<=[.!?:;])\s+|\n\s*\n|\n(?=[*\d`#])", text)
    squashed = (" ".join(re.sub(r"[*_`>]", "", part).lower().split()) for part in parts)
    return {part for part in squashed if len(part.split()) >= 3}


def test_the_notebooks_are_short():
    words = {path.stem: len(markdown(path).split()) for path in NOTEBOOKS}
    assert sum(words.values()) <= MAX_WORDS, words


def test_no_sentence_is_said_in_two_notebooks():
    seen: dict[str, str] = {}
    for path in NOTEBOOKS:
        for sentence in sentences(markdown(path)):
            assert sentence not in seen, f"{path.stem} and {seen[sentence]} both say: {sentence!r}"
            seen[sentence] = path.stem


def test_the_lesson_steps_are_there():
    assert [p.stem for p in NOTEBOOKS] == [
        "01_set_up_environment", "02_hugging_face_auth", "03_video_prompts", "04_generate_frames",
        "05_collect_and_verify_frames", "06_stitch_video", "07_interactive_mode", "08_hardware_scaling",
        "09_troubleshooting", "10_whats_next"]


def test_doctor_sections_are_headings_of_the_troubleshooting_notebook():
    from ttlesson.setup import doctor

    notebook = nbformat.read(next(p for p in NOTEBOOKS if p.stem == "09_troubleshooting"), as_version=4)
    headings = {line[3:].strip() for cell in notebook.cells if cell.cell_type == "markdown"
                for line in cell.source.splitlines() if line.startswith("## ")}
    assert set(doctor.SEE.values()) <= headings
    assert doctor.TROUBLESHOOTING == "notebooks/09_troubleshooting.ipynb"
