"""Run the lesson notebooks the way CI does and store only the outputs nbval checks.

Cells tagged ``nbval-check-output`` keep the output of this run (CI compares against it); every other
output, execution count and widget state is removed, so notebooks are committed clean. Cell metadata other
than the tags and JupyterLab's ``jupyter`` key (a checked cell's collapsed source) is dropped.

    .venv/bin/python tools/refresh_notebooks.py            # all notebooks
    .venv/bin/python tools/refresh_notebooks.py 04 06      # those whose names start with 04 or 06
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
CHECK_TAG = "nbval-check-output"
KEPT_METADATA = ("tags", "jupyter")
CI_SETTINGS = {"TTLESSON_MODEL": "tiny", "TTLESSON_BACKEND": "auto"}


def clean(notebook) -> None:
    """Drop every output and execution count but the checked cells', and all widget state."""
    notebook.metadata.pop("widgets", None)
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        cell.metadata = {key: value for key, value in cell.metadata.items() if key in KEPT_METADATA}
        # nbval wants checked cells to look run: they keep their count
        if CHECK_TAG not in cell.metadata.get("tags", []):
            cell.outputs = []
            cell.execution_count = None


def refresh(path: Path, workdir: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    clean(notebook)
    nbformat.write(notebook, path)
    print(f"refreshed {path.name}")


def main(prefixes: list[str]) -> None:
    with tempfile.TemporaryDirectory() as workdir:
        os.environ.update(CI_SETTINGS, TTLESSON_WORKDIR=workdir)
        for path in sorted(NOTEBOOKS.glob("*.ipynb")):
            if not prefixes or path.name.startswith(tuple(prefixes)):
                refresh(path, Path(workdir))


if __name__ == "__main__":
    main(sys.argv[1:])
