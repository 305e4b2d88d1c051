"""The course's notebooks open where students open them: the three fastest executed end to end
through a real Jupyter kernel (nbclient), from the repository root and from tutorials/, with
their first cell's ``MODE`` switched to quick (a student's one-line edit; quick mode never
writes the committed figures). Skipped with a reason where nbclient or ipykernel is missing
(the ``test`` extra installs both)."""
from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="nbformat not installed (pip install -e '.[test]')")
nbclient = pytest.importorskip("nbclient", reason="nbclient not installed (pip install -e '.[test]')")
pytest.importorskip("ipykernel", reason="ipykernel not installed (pip install -e '.[test]')")

ROOT = Path(__file__).resolve().parents[2]
FASTEST = ["00_spiking_networks_in_plain_words", "02_if_neuron", "A1_arrays_and_convolution"]


@pytest.mark.parametrize("where", ["root", "tutorials"])
@pytest.mark.parametrize("name", FASTEST)
def test_a_notebook_runs_in_a_kernel_from_the_root_and_from_tutorials(name, where):
    nb = nbformat.read(ROOT / "tutorials" / f"{name}.ipynb", as_version=4)
    first = next(c for c in nb.cells if c.cell_type == "code")
    assert 'MODE = "full"' in first.source, "the first code cell holds the mode in one line"
    first.source = first.source.replace('MODE = "full"', 'MODE = "quick"')
    cwd = ROOT if where == "root" else ROOT / "tutorials"
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(cwd)}}).execute()
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "-- quick mode" in text and "SEE [NO]" not in text and "SEE [yes]" in text
