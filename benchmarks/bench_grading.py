"""Where grading time goes, measured in one run on this machine. Prints figures; asserts nothing.

    .venv/bin/python benchmarks/bench_grading.py [NOTEBOOK] [--repeat 3] [--max-load 1.0] [--wait-minutes 15]

1. nbclient alone: the notebook executed by a plain NotebookClient (no sandbox, no harvest,
   no graders, no report) in a folder holding it and data/fruits: what a bare run pays.
2. the harness, cold: `grade.py check` of the same notebook in-process (sandbox, a fresh kernel,
   harvest, pytest graders against the cached reference, results.json and report.html).
3. the harness, warm: one batch worker grading the notebook again and again; each grade takes the
   spare kernel started (torch imported) while the grade before it ran: forked from the worker's
   fork server where kernels are (sandbox/forkserver.py; AUTOGRADER_FORK_SERVER=0 measures the
   spares that import torch themselves), and its report is drawn during the next grade, as in a
   batch. The first grade, which starts cold, is not counted; the wait for the last page is.
3c. the same with AUTOGRADER_FORK_SERVER=0: each kernel, spares included, imports torch itself.
3b. the same, with the harvest's second step asked for every value it offers: what a grade cost
   before the graders chose (the student's own upstream re-run even when their values are the
   reference's; autograder/execution.py).
4. a batch of submissions/fruits with an empty cache (reference computed first, every entry run),
   then the same batch again: the reference cached and the runs kept (a regrade), then with
   --rerun (the reference cached, every entry run again).
Medians of --repeat runs for 1-3; ratios are of figures taken in this one run.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from autograder import assignments  # noqa: E402
from autograder.artefacts import ON_REQUEST  # noqa: E402
from autograder.batch import BatchJob, run_batch  # noqa: E402
from autograder.intake import Submission, load_notebook  # noqa: E402
from autograder.pipeline import SubmissionGrader  # noqa: E402
from autograder.workspace import Workspace  # noqa: E402


def time_nbclient_alone(notebook_path: Path, workspace: Workspace) -> float:
    import nbformat
    from nbclient import NotebookClient
    path = Path(notebook_path)
    notebook = load_notebook(Submission(path.stem, path, path, path.parent, [path]))
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "data").mkdir()
        os.symlink(workspace.data_root / "fruits", Path(folder) / "data" / "fruits")
        started = time.perf_counter()
        client = NotebookClient(nbformat.from_dict(notebook), timeout=600, kernel_name="python3",
                                allow_errors=True, resources={"metadata": {"path": folder}})
        client.execute()
        return time.perf_counter() - started


def time_harness(notebook_path: Path, grader: SubmissionGrader) -> float:
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        grader.grade(notebook_path, Path(out))
        return time.perf_counter() - started


class EveryOfferedValue(SubmissionGrader):
    """A grader whose harvest computes every value offered for its second step (3b)."""

    def _requested_values(self, student) -> set[str]:
        return {name for name in student.entries if student.status(name) == ON_REQUEST}


def time_harness_warm(notebook_path: Path, assignment, workspace: Workspace, repeat: int,
                      grader_class=SubmissionGrader) -> list[float]:
    """Per-grade times of a batch worker in its steady state, made as batch.py makes it: each grade
    takes a spare kernel, and its report.html is drawn on the worker's thread while the next grade
    runs; the wait for the last page is counted in the last grade."""
    grader = grader_class(assignment, workspace, warm=True, reports_in_background=True)
    times = []
    with tempfile.TemporaryDirectory() as out:   # one folder: the pages are written after grade() returns
        try:
            grader.grade(notebook_path, Path(out))   # cold: starts the first spare
            for _ in range(repeat):
                started = time.perf_counter()
                grader.grade(notebook_path, Path(out))
                times.append(time.perf_counter() - started)
        finally:
            started = time.perf_counter()
            grader.close()   # waits for the last page (and removes the spare)
    times[-1] += time.perf_counter() - started
    return times


def time_batches(folder: Path, workers: int) -> tuple[float, float, float, int]:
    with tempfile.TemporaryDirectory() as scratch:
        cache = Path(scratch) / "cache"
        shutil.copytree(REPO / ".cache" / "torch", cache / "torch")  # weights, but no reference values
        timings = []
        for reuse in (True, True, False):   # first run, regrade, regrade with --rerun
            job = BatchJob("fruits", Path(scratch) / "out", cache, REPO / "data", reuse_runs=reuse)
            started = time.perf_counter()
            rows = run_batch(job, folder, workers=workers, progress=False)
            timings.append(time.perf_counter() - started)
    return (*timings, len(rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebook", nargs="?", type=Path, default=REPO / "submissions" / "fruits" / "alice_correct.ipynb")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--max-load", type=float, default=1.0)
    parser.add_argument("--wait-minutes", type=float, default=15)
    args = parser.parse_args()

    workspace = Workspace()
    assignment = assignments.load("fruits")
    grader = SubmissionGrader(assignment, workspace)  # prepares weights, data, reference
    from bench_batch import wait_for_quiet   # this folder is on sys.path when run as a script
    wait_for_quiet(args.max_load, args.wait_minutes)
    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; notebook: {args.notebook}; "
          f"repeat {args.repeat}")

    bare = [time_nbclient_alone(args.notebook, workspace) for _ in range(args.repeat)]
    harness = [time_harness(args.notebook, grader) for _ in range(args.repeat)]
    warm = time_harness_warm(args.notebook, assignment, workspace, args.repeat)
    every = time_harness_warm(args.notebook, assignment, workspace, args.repeat, EveryOfferedValue)
    os.environ["AUTOGRADER_FORK_SERVER"] = "0"      # 3c: spares that import torch themselves
    unforked = time_harness_warm(args.notebook, assignment, workspace, args.repeat)
    del os.environ["AUTOGRADER_FORK_SERVER"]
    medians = [statistics.median(t) for t in (bare, harness, warm, every, unforked)]
    for label, times, median in zip(("nbclient alone", "harness, cold (check)", "harness, warm (batch)",
                                     "warm, every offered value", "warm, kernels not forked"),
                                    (bare, harness, warm, every, unforked), medians):
        print(f"{label:<26} median {median:6.2f} s   runs {', '.join(f'{t:.2f}' for t in times)}")
    print(f"cold / nbclient            {medians[1] / medians[0]:6.2f}x")
    print(f"warm / nbclient            {medians[2] / medians[0]:6.2f}x")
    print(f"warm / every offered value {medians[2] / medians[3]:6.2f}x")
    print(f"warm / not forked          {medians[2] / medians[4]:6.2f}x")

    first, regrade, rerun, count = time_batches(REPO / "submissions" / "fruits", args.workers)
    print(f"batch of {count} ({args.workers} workers), empty cache            {first:6.2f} s")
    print(f"  again: reference cached, runs kept (regrade)  {regrade:6.2f} s   {regrade / first:5.2f}x")
    print(f"  again with --rerun: reference cached          {rerun:6.2f} s   {rerun / first:5.2f}x")


if __name__ == "__main__":
    main()
