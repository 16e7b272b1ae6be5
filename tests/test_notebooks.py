"""The notebooks run top to bottom in a fresh kernel of this project's interpreter, and are
committed without outputs (nbstripout).

Each notebook is executed with nbclient in a ``python3`` kernel; the interpreter's own
``bin`` folder goes first on PATH, so the kernel spec's ``python`` is the project venv's
(the venv holds ipykernel and its ``python3`` kernel spec). Their cells assert their own
results (e.g. that two criss-cross passes reach every position), so a notebook that runs
through has also passed its checks.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
# 01 trains an R=2 model on the context toy for its attention maps (~2-3 minutes on 2 busy
# cores): a slow test (`make test-all`); the others run in the default suite.
SLOW_NOTEBOOKS = {"01_criss_cross_attention.ipynb"}
NOTEBOOKS = [
    "01_criss_cross_attention.ipynb",
    "02_datasets.ipynb",
    "03_video_attention.ipynb",
]
CELL_TIMEOUT_S = 600  # per cell, for a slow shared machine (idle: ~1 min per notebook)


@pytest.fixture
def venv_kernel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """PATH starting with this interpreter's folder, so the ``python3`` kernel runs in it."""
    bin_dir = str(Path(sys.executable).parent)
    monkeypatch.setenv("PATH", bin_dir + os.pathsep + os.environ.get("PATH", ""))
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")  # silence jupyter_core's migration note
    monkeypatch.setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")


def test_every_notebook_is_listed():
    assert sorted(p.name for p in NOTEBOOK_DIR.glob("*.ipynb")) == sorted(NOTEBOOKS)


def test_python3_kernel_is_this_interpreter(venv_kernel_env):
    from jupyter_client.kernelspec import KernelSpecManager

    spec = KernelSpecManager().get_kernel_spec("python3")
    executable = spec.argv[0]
    found = executable if os.path.isabs(executable) else shutil.which(executable)
    assert found is not None and Path(found).parent == Path(sys.executable).parent
    assert spec.argv[1:3] == ["-m", "ipykernel_launcher"]


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_NOTEBOOKS else n for n in NOTEBOOKS],
    ids=lambda n: Path(n).stem,
)
def test_notebook_runs(name: str, venv_kernel_env, capsys):
    from nbclient import NotebookClient

    path = NOTEBOOK_DIR / name
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK_DIR)}},
    )
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError, with the traceback, if a cell fails
    elapsed = time.perf_counter() - start

    code_cells = [c for c in notebook.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code_cells)
    outputs = [o for c in code_cells for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    figures = [o for o in outputs if "image/png" in o.get("data", {})]
    assert figures, f"{name} drew no figure"
    with capsys.disabled():
        print(f"\n{name} ran in {elapsed:.1f} s")


def committed_text(path: Path) -> str:
    """The notebook as committed (HEAD); the file itself when it is not committed yet."""
    relative = path.relative_to(ROOT).as_posix()
    try:
        proc = subprocess.run(
            ["git", "show", f"HEAD:{relative}"], cwd=ROOT, capture_output=True, text=True
        )
    except FileNotFoundError:  # no git: an unpacked source tree
        return path.read_text()
    return proc.stdout if proc.returncode == 0 else path.read_text()


@pytest.mark.parametrize("name", NOTEBOOKS, ids=lambda n: Path(n).stem)
def test_committed_notebook_has_no_outputs(name: str):
    notebook = nbformat.reads(committed_text(NOTEBOOK_DIR / name), as_version=4)
    nbformat.validate(notebook)
    code_cells = [c for c in notebook.cells if c.cell_type == "code"]
    assert code_cells
    for index, cell in enumerate(code_cells):
        assert cell.outputs == [], f"code cell {index} of {name} holds outputs"
        assert cell.execution_count is None, f"code cell {index} of {name} has a count"
        assert "execution" not in cell.metadata
    assert notebook.metadata.kernelspec.name == "python3"
