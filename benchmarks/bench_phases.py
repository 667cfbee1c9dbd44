"""Where one submission's grading time goes, phase by phase. Prints figures; asserts nothing.

    .venv/bin/python benchmarks/bench_phases.py [NOTEBOOK] [--assignment fruits] [--repeat 3]

Grades NOTEBOOK in-process (reference cached) and splits its wall time with the run's own record
(run.json): starting the jailed kernel, the first code cell (the imports: torch and torchvision),
the student's other cells, the harvest (the grader's calls on hidden inputs, in the kernel),
the sandbox's set-up and tear-down, and what the grader's process does after the run (pytest
graders, results.json, report.html). Medians of --repeat runs; shares are of the same run's total.
Two columns: cold (a fresh kernel, as `grade.py check` runs) and warm (a batch worker's steady
state: each grade takes the spare kernel, torch already imported, started while the one before ran;
its first, cold grade is not counted).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from autograder import assignments  # noqa: E402
from autograder.intake import submission_id  # noqa: E402
from autograder.pipeline import SubmissionGrader  # noqa: E402
from autograder.workspace import Workspace  # noqa: E402


def one_run(grader: SubmissionGrader, notebook: Path) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        grader.grade(notebook, Path(out))
        total = time.perf_counter() - started
        run = json.loads((Path(out) / submission_id(notebook) / "run.json").read_text())
    code_cells = [c for c in run["cells"] if c["status"] != "not run"]
    first = code_cells[0]["seconds"] if code_cells else 0.0
    cells = sum(c["seconds"] for c in code_cells)
    phases = {
        "kernel start (jailed ipykernel)": run["kernel_start_seconds"],
        "first cell (imports)": first,
        "the student's other cells": cells - first,
        "harvest (hidden inputs, in the kernel)": run["harvest_seconds"],
    }
    phases["sandbox set-up and tear-down"] = run["seconds"] - sum(phases.values())
    phases["graders, results.json, report (grader's process)"] = total - run["seconds"]
    phases["total"] = total
    return phases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebook", nargs="?", type=Path, default=REPO / "submissions" / "fruits" / "alice_correct.ipynb")
    parser.add_argument("--assignment", default="fruits")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    workspace = Workspace(cache=REPO / ".cache", data_root=REPO / "data")
    assignment = assignments.load(args.assignment)
    notebook = args.notebook.resolve()
    cold = [one_run(SubmissionGrader(assignment, workspace), notebook) for _ in range(args.repeat)]
    worker = SubmissionGrader(assignment, workspace, warm=True)
    one_run(worker, notebook)   # starts cold, and starts the first spare
    warm = [one_run(worker, notebook) for _ in range(args.repeat)]
    worker.close()
    print(f"{args.notebook.name} ({args.assignment}), medians of {args.repeat} runs")
    print(f"  {'phase':<52} {'cold':>15}   {'warm (batch)':>15}")
    totals = [statistics.median(r["total"] for r in runs) for runs in (cold, warm)]
    for phase in cold[0]:
        values = [statistics.median(r[phase] for r in runs) for runs in (cold, warm)]
        print(f"  {phase:<52} " + "   ".join(f"{v:6.2f} s {100 * v / t:5.1f} %" for v, t in zip(values, totals)))
    print(f"  warm / cold: {totals[1] / totals[0]:.2f}x")


if __name__ == "__main__":
    main()
