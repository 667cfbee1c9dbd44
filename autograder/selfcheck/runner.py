"""The self-check, outside the kernel: find or make weights, run the notebook, print the table.

    python selfcheck.py [NOTEBOOK | MODULE.py] [--timeout S]

Runs on the student's machine in their own Python (the one that runs `selfcheck.py`): the notebook
is executed cell by cell in a Jupyter kernel of that Python, with the bundle's data under
data/<assignment>/, then the public checks run in the same kernel on the notebook's values.

Weights: a checkpoint the student downloaded (torchvision's cache, $TORCH_HOME or ~/.cache/torch)
is used as it is; a missing one is replaced by a stand-in made here once (the architecture's own
random initialisation under a fixed seed, in the bundle's torch_home/): the public checks look at
shapes and types only, so stand-ins are enough, and nothing is downloaded.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
CHECK_CELL = """\
def _selfcheck():
    namespace = dict(globals())
    checks = {{'__name__': '_selfcheck'}}
    for path in {sources!r}:
        with open(path, encoding='utf-8') as handle:
            exec(compile(handle.read(), '<selfcheck ' + path + '>', 'exec'), checks)
    checks['run_checks'](namespace, {context!r}, {out!r})
_selfcheck()
del _selfcheck
"""


def _weights_module():
    try:
        from . import weights          # the student bundle: a copy of the harness's weight store module
    except ImportError:
        from .. import weights         # the repository: autograder/weights.py
    return weights


def _user_torch_home() -> Path:
    """Where torchvision itself looks for downloaded weights on this machine."""
    if os.environ.get("TORCH_HOME"):
        return Path(os.environ["TORCH_HOME"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return Path(cache).expanduser() / "torch"


def prepare_weights(models: list[str], bundle: Path) -> tuple[Path, list[str]]:
    """The TORCH_HOME for the notebook, and one line per model saying which weights it gets."""
    weights = _weights_module()
    user = _user_torch_home()
    files = {m: weights.CHECKPOINTS[m].file_name for m in models}
    if all((user / "hub" / "checkpoints" / f).is_file() for f in files.values()):
        return user, [f"{m}: your downloaded weights ({user / 'hub' / 'checkpoints' / f})" for m, f in files.items()]
    local = weights.WeightStore(bundle / "torch_home")
    local.checkpoints.mkdir(parents=True, exist_ok=True)
    lines, make = [], []
    for model, file in files.items():
        mine, here = user / "hub" / "checkpoints" / file, local.checkpoints / file
        if mine.is_file():
            if here.is_symlink() or not here.exists():
                here.unlink(missing_ok=True)
                try:
                    here.symlink_to(mine)
                except OSError:            # no symlinks (Windows without developer mode): copy
                    shutil.copyfile(mine, here)
            lines.append(f"{model}: your downloaded weights ({mine})")
        elif local.kind(model) != "missing":
            kind = local.kind(model)
            lines.append(f"{model}: {'real weights' if kind == 'real' else 'stand-in weights'} in {here.parent}")
        else:
            make.append(model)
    if make:
        print(f"making stand-in weights for {', '.join(make)} (once; nothing is downloaded) ...", flush=True)
        local.ensure(make)
        lines += [f"{m}: stand-in weights (random, fixed seed: shapes are right, predictions are not) "
                  f"in {local.checkpoints}" for m in make]
    return local.root, lines


def working_folder(notebook: Path, bundle: Path, data_name: str, scratch: Path) -> tuple[Path, str]:
    """Where the notebook runs: its own folder when data/<data_name>/ is there, else a scratch copy
    of its folder's files with the bundle's data beside them."""
    if (notebook.parent / "data" / data_name).is_dir():
        return notebook.parent, ""
    work = scratch / "work"
    work.mkdir()
    for path in notebook.parent.iterdir():
        if path.is_file() and path.stat().st_size < 20 * 2**20:
            shutil.copyfile(path, work / path.name)
    (work / "data").mkdir()
    try:
        (work / "data" / data_name).symlink_to(bundle / "data" / data_name, target_is_directory=True)
    except OSError:
        shutil.copytree(bundle / "data" / data_name, work / "data" / data_name)
    return work, f"(run in a copy of {notebook.parent} with the bundle's data/{data_name}/)"


def execute(notebook_path: Path, work: Path, torch_home: Path, timeout: float, check_sources: list[str],
            context: dict, out: Path) -> dict:
    """Run every code cell (errors allowed), then the check cell; returns what happened."""
    import nbformat
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    notebook = read_submission(notebook_path)
    record = {"cells": 0, "errors": [], "images": 0, "died": "", "answers": _answers(notebook)}
    with tempfile.TemporaryDirectory(prefix="selfcheck-kernel-") as specs:
        # A kernel of this very Python (not whatever "python3" means in the student's Jupyter).
        spec = Path(specs) / "selfcheck-python"
        spec.mkdir()
        (spec / "kernel.json").write_text(json.dumps({
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "self-check", "language": "python",
            "env": {"TORCH_HOME": str(torch_home), "PYTHONHASHSEED": "0"}}))
        manager = KernelManager(kernel_name="selfcheck-python",
                                kernel_spec_manager=KernelSpecManager(kernel_dirs=[specs]))
        client = NotebookClient(notebook, km=manager, timeout=int(timeout), allow_errors=True,
                                interrupt_on_timeout=True, record_timing=False,
                                resources={"metadata": {"path": str(work)}})
        index, checking = 0, False
        # The kernel's own chatter (start-up warnings, C-level crash messages) goes to a log,
        # shown only when the kernel dies.
        log = open(out.with_name("kernel.log"), "ab")
        with log, client.setup_kernel(stdout=log, stderr=log):
            try:
                for index, cell in enumerate(notebook.cells):
                    if cell.cell_type != "code":
                        continue
                    record["cells"] += 1
                    try:
                        client.execute_cell(cell, index)
                    except CellTimeoutError:
                        record["errors"].append((index, f"ran past the {timeout:g} s cell limit"))
                        continue
                    for output in cell.get("outputs", []):
                        if output.get("output_type") == "error":
                            record["errors"].append((index, f"{output.get('ename')}: {output.get('evalue', '')}"[:200]))
                        if any(k.startswith("image/") for k in output.get("data", {})):
                            record["images"] += 1
                context = {**context, "image_outputs": record["images"], "answers": record["answers"]}
                check = nbformat.v4.new_code_cell(CHECK_CELL.format(sources=check_sources, context=context,
                                                                    out=str(out)))
                notebook.cells.append(check)
                checking = True
                client.execute_cell(check, len(notebook.cells) - 1)
                errors = [o for o in check.outputs if o.get("output_type") == "error"]
                if errors:
                    record["died"] = f"the checks could not run: {errors[0].get('ename')}: {errors[0].get('evalue')}"
            except DeadKernelError:
                where = "while the checks ran" if checking else f"in cell {index + 1}"
                record["died"] = f"the kernel died {where} (out of memory, or the code made it exit)"
                tail = out.with_name("kernel.log").read_text(errors="replace").strip().splitlines()[-3:]
                if tail:
                    record["died"] += ": " + " / ".join(tail)
    return record


def read_submission(path: Path):
    """The notebook, or a module (.py) cut into cells: at `# %%` markers, else one cell per
    top-level statement, so that one failing statement does not hide the ones after it."""
    import ast
    import nbformat
    if path.suffix.lower() == ".ipynb":
        return nbformat.read(str(path), as_version=4)
    text = path.read_text(encoding="utf-8-sig")
    lines = text.splitlines(keepends=True)
    if any(line.startswith("# %%") for line in lines):
        starts = [i for i, line in enumerate(lines) if line.startswith("# %%")]
    else:
        try:
            starts = [node.lineno - 1 for node in ast.parse(text).body]
            starts = [min([s] + [d.lineno - 1 for d in getattr(node, "decorator_list", [])])
                      for s, node in zip(starts, ast.parse(text).body)]
        except SyntaxError:
            starts = []   # one cell: the kernel reports the syntax error where it is
    bounds = [0] + [s for s in starts if s > 0] + [len(lines)]
    cells = []
    for chunk in ("".join(lines[a:b]) for a, b in zip(bounds, bounds[1:])):
        head = chunk.lstrip().splitlines()[0] if chunk.strip() else ""
        if head.startswith("# %%") and "[markdown]" in head:
            body = [line[2:] if line.startswith("# ") else line.lstrip("#") for line in chunk.strip().splitlines()[1:]]
            cells.append(nbformat.v4.new_markdown_cell("\n".join(body).strip()))
        elif chunk.strip():
            cells.append(nbformat.v4.new_code_cell(chunk.rstrip("\n")))
    return nbformat.v4.new_notebook(cells=cells)


def _answers(notebook) -> list[str]:
    found = []
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            match = re.match(r"^#+\s*answer\s+([A-Za-z]+\d*)\b", cell.source.strip(), re.IGNORECASE)
            if match:
                found.append(match.group(1).upper())
    return found


def print_table(assignment: str, notebook: Path, results: list[dict], record: dict, weight_lines: list[str],
                note: str, seconds: float) -> None:
    print(f"\nSelf-check of {notebook.name} ({assignment}): public checks only {note}".rstrip())
    for line in weight_lines:
        print(f"  weights  {line}")
    errors = "; ".join(f"cell {i + 1}: {text}" for i, text in record["errors"][:3])
    print(f"  notebook {record['cells']} code cells run, {len(record['errors'])} with errors" +
          (f" ({errors})" if errors else ""))
    if record["died"]:
        print(f"  {record['died']}")
    width = max([len(r["check"]) for r in results] + [20])
    print(f"\n{'task':<5} {'check':<{width}}  result")
    print(f"{'-' * 5} {'-' * width}  {'-' * 6}")
    for row in results:
        mark = "ok" if row["status"] == "passed" else "FAILED"
        print(f"{row['task']:<5} {row['check'][:width]:<{width}}  {mark}")
        if row["message"]:
            print(f"{'':<6}{row['message'][:400]}")
    passed = sum(r["status"] == "passed" for r in results)
    print(f"\n{passed} of {len(results)} public checks passed ({seconds:.1f} s).")
    print("These are the handout's shape, type and sanity checks. The autograder also runs your functions on "
          "inputs you have not seen and compares your values with the reference: passing here is necessary, "
          "not sufficient.")


def main(argv: list[str] | None = None) -> int:
    started = time.monotonic()
    bundle = PACKAGE.parent
    # Written by `grade.py student-bundle`: {"assignment", "data", "models"}.
    config = json.loads((PACKAGE / "assignment.json").read_text()) if (PACKAGE / "assignment.json").is_file() else {}
    assignment = config.get("assignment")
    parser = argparse.ArgumentParser(prog="python selfcheck.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebook", type=Path, nargs="?",
                        default=bundle / f"{assignment}.ipynb" if assignment else None,
                        help=f"your notebook (default: {assignment}.ipynb beside selfcheck.py)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per cell (default 600)")
    args = parser.parse_args(argv)
    if not assignment or not (PACKAGE / "public" / f"{assignment}.py").is_file():
        print(f"selfcheck: no public checks for assignment {assignment!r} in {PACKAGE / 'public'}", file=sys.stderr)
        return 2
    notebook = args.notebook
    if notebook is None or not notebook.is_file():
        print(f"selfcheck: {notebook} is not a file: pass your notebook, e.g. python selfcheck.py {assignment}.ipynb",
              file=sys.stderr)
        return 2
    if notebook.suffix.lower() not in (".ipynb", ".py"):
        print(f"selfcheck: {notebook.name} is not a notebook (.ipynb) or a module (.py)", file=sys.stderr)
        return 2
    missing = [m for m in ("nbformat", "nbclient", "ipykernel", "torch", "torchvision") if not _importable(m)]
    if missing:
        print(f"selfcheck: this Python ({sys.executable}) lacks {', '.join(missing)}: "
              f"pip install {' '.join(missing)}", file=sys.stderr)
        return 2
    try:
        read_submission(notebook)
    except Exception as error:  # noqa: BLE001 - broken JSON, not UTF-8, not a notebook
        print(f"selfcheck: {notebook.name} cannot be read ({type(error).__name__}: {str(error)[:200]})",
              file=sys.stderr)
        return 2
    data_name = config.get("data", assignment)
    torch_home, weight_lines = prepare_weights(config.get("models", []), bundle)
    sources = [str(PACKAGE / "kernel_side.py"), str(PACKAGE / "public" / f"{assignment}.py")]
    with tempfile.TemporaryDirectory(prefix="selfcheck-") as scratch:
        scratch = Path(scratch)
        work, note = working_folder(notebook.resolve(), bundle, data_name, scratch)
        (scratch / "checks").mkdir()
        out = scratch / "results.json"
        context = {"data_dir": str((work / "data" / data_name).resolve()), "scratch": str(scratch / "checks")}
        print(f"running {notebook.name} ...", flush=True)
        record = execute(notebook.resolve(), work, torch_home, args.timeout, sources, context, out)
        results = json.loads(out.read_text()) if out.is_file() else []
    print_table(assignment, notebook, results, record, weight_lines, note, time.monotonic() - started)
    return 0 if results and all(r["status"] == "passed" for r in results) else 1


def _importable(name: str) -> bool:
    import importlib.util
    return importlib.util.find_spec(name) is not None
