"""Running a notebook of the repository in a real kernel, for the notebook tests.

Each notebook runs in a fresh kernel of the interpreter running the tests (a kernel spec
written for the session, so that no ``python3`` kernel registered elsewhere on the machine gets
in the way), from a temporary working directory, so that everything it writes lands there.
"""

from __future__ import annotations

from pathlib import Path

import nbclient
import nbformat
import pytest


def execute(
    notebook_path: Path, kernel: str, tmp_path_factory: pytest.TempPathFactory
) -> tuple[nbformat.NotebookNode, Path]:
    """Run the notebook top to bottom; return it with its outputs, and the folder it ran in.

    Raises:
        nbclient.exceptions.CellExecutionError: a cell failed (with the cell's traceback).
    """
    from ipykernel.kernelspec import install

    folder = tmp_path_factory.mktemp(notebook_path.stem)
    kernels = tmp_path_factory.mktemp("kernels")
    install(kernel_name=kernel, prefix=str(kernels))
    notebook = nbformat.read(notebook_path, as_version=4)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JUPYTER_PATH", str(kernels / "share" / "jupyter"))
        patch.chdir(folder)
        patch.setenv("MPLBACKEND", "Agg")
        patch.setenv("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        patch.delenv("MLFLOW_REGISTRY_URI", raising=False)
        client = nbclient.NotebookClient(
            notebook, kernel_name=kernel, timeout=300,
            resources={"metadata": {"path": str(folder)}},
        )  # fmt: skip
        client.execute()
    return notebook, folder


def stdout(notebook: nbformat.NotebookNode) -> str:
    """Everything the notebook's code cells printed."""
    return "".join(
        output.get("text", "")
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == "stream" and output.name == "stdout"
    )
