"""Notebooks are executed top to bottom; a failing cell fails the test."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.helpers import REPO

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


# The quickstart runs in the fast suite; the paper notebooks (~40-60 s each) in the slow one.
FAST = {"01_quickstart.ipynb"}
CASES = [pytest.param(p, id=p.name, marks=() if p.name in FAST else pytest.mark.slow) for p in NOTEBOOKS]


@pytest.mark.parametrize("path", CASES)
def test_notebook_runs(path: Path, tmp_path):
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
