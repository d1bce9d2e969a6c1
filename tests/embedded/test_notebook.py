"""The simulation notebook runs end to end against the embedded server (few users)."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

# Starts a Jupyter kernel and runs a simulation.
pytestmark = pytest.mark.slow(seconds=5)

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "ab-testing-simulation.ipynb"


def test_the_notebook_runs_and_names_a_decision(monkeypatch) -> None:
    monkeypatch.setenv("ABTEST_NOTEBOOK_USERS", "150")
    monkeypatch.delenv("ABTEST_API_URL", raising=False)
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        notebook,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    ).execute()
    outputs = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
    ]
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert "Champion1" in text and "Challenger1" in text
    assert "winner:" in text
    # the stats table counts all 150 simulated users
    assert (
        sum(
            int(line.split()[1])
            for line in text.splitlines()
            if line.startswith(("Champion1 ", "Challenger1 ")) and len(line.split()) == 7
        )
        >= 150
    )
    # it ends as the article does: concluded, the winner serving every user, new and returning
    (state,) = [line for line in text.splitlines() if line.startswith("state: ")]
    assert state.startswith("state: concluded, winner ")
    winner = state.split()[3].rstrip(",")
    assert winner in ("Champion1", "Challenger1")
    assert f"returning users after the conclusion: {winner} 100%" in text
    assert f"new users after the conclusion: {winner} 100%" in text
    # the off-policy section estimates each variant and shows the truth beside it
    assert sum(line.split()[1:2] == ["IPS"] and "truth" in line for line in text.splitlines()) == 2
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 4
    assert os.environ["ABTEST_NOTEBOOK_USERS"] == "150"
