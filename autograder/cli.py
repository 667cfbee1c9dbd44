"""grade.py: the command line of TAs, students and the LMS container.

    python grade.py setup   [--assignment A]...          weights, fixture data, reference values
    python grade.py batch   FOLDER --assignment A --out DIR [--workers N]
    python grade.py check   NOTEBOOK --assignment A [--out DIR]
    python grade.py weights status | add FILE... | standins
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import assignments
from .assignments import REPO


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--assignment", "-a", required=True, choices=assignments.names())
    parser.add_argument("--data", type=Path, default=REPO / "data",
                        help="folder holding <assignment>/ data (default: the generated fixture data)")
    parser.add_argument("--cache", type=Path, default=REPO / ".cache", help="weight store and reference cache")
    parser.add_argument("--isolation", choices=["auto", "bwrap", "none"], default="auto",
                        help="auto: bubblewrap where it works, else plain processes (the report says which)")
    parser.add_argument("--cell-timeout", type=float, help="seconds per cell (default: the assignment's)")
    parser.add_argument("--timeout", type=float, help="seconds per submission (default: the assignment's)")
    parser.add_argument("--memory-gib", type=float, help="memory limit of the student's kernel")


def _overrides(args, concurrent_kernels: int = 1) -> tuple:
    # Share the cores between the kernels that run at once: no oversubscription in a batch.
    threads = max(1, (os.cpu_count() or 1) // max(1, concurrent_kernels))
    pairs = {"cell_timeout_s": args.cell_timeout, "total_timeout_s": args.timeout,
             "memory_bytes": int(args.memory_gib * 2**30) if args.memory_gib else None,
             "threads": threads}
    return tuple((k, v) for k, v in pairs.items() if v is not None)


def cmd_batch(args) -> int:
    from .batch import BatchJob, run_batch
    if args.marks is not None and not args.marks.is_file():
        print(f"grade.py: marks file {args.marks} does not exist", file=sys.stderr)
        return 2
    job = BatchJob(args.assignment, args.out.resolve(), args.cache.resolve(), args.data.resolve(),
                   args.isolation, _overrides(args, args.workers),
                   args.marks.resolve() if args.marks else None)
    rows = run_batch(job, args.folder, workers=args.workers, progress=not args.quiet)
    graded = sum(r["status"] == "graded" for r in rows)
    print(f"{len(rows)} submissions ({graded} graded, {len(rows) - graded} not gradable or failed)")
    print(f"gradebook: {job.out / 'grades.csv'}")
    print(f"overview:  {job.out / 'index.html'}")
    if (job.out / "to_mark.csv").exists():
        print(f"to mark:   {job.out / 'to_mark.csv'} (fill in points, pass it back with --marks)")
    return 0


def cmd_check(args) -> int:
    from .pipeline import SubmissionGrader
    from .workspace import Workspace
    assignment = assignments.load(args.assignment, **dict(_overrides(args)))
    workspace = Workspace(cache=args.cache, data_root=args.data)
    grader = SubmissionGrader(assignment, workspace, isolation=args.isolation)
    out = (args.out or REPO / "out" / "check").resolve()
    row = grader.grade(args.notebook, out)
    print_task_table(assignment, out / row["id"] / "results.json")
    print(f"\n{row['message']}")
    print(f"report: {out / row['id'] / 'report.html'}")
    return 0


def print_task_table(assignment, results_path: Path) -> None:
    import json
    results = json.loads(results_path.read_text())
    width = max(len(t["name"]) for t in results["tests"]) if results["tests"] else 20
    width = min(width, 80)
    print(f"{'check':<{width}}  {'points':>9}  result")
    print("-" * (width + 20))
    for test in results["tests"]:
        status = test.get("status", "to mark")  # manual items carry no status until marked
        mark = {"passed": "passed", "failed": "FAILED"}.get(status, "to mark")
        print(f"{test['name'][:width]:<{width}}  {test['score']:>4g}/{test['max_score']:<4g}  {mark}")
        if status == "failed" and test["output"]:
            print(f"{'':<4}{test['output'][:300]}")
    print("-" * (width + 20))
    print(f"{'total':<{width}}  {results['score']:>4g}/{assignment.max_points:<4g}")


def cmd_setup(args) -> int:
    from .workspace import Workspace
    workspace = Workspace(cache=args.cache, data_root=args.data)
    for name in args.assignment or assignments.names():
        assignment = assignments.load(name)
        reference = workspace.prepare(assignment)
        kinds = ", ".join(f"{w['model']}: {w['kind']}" for w in workspace.store.describe(list(assignment.models)))
        print(f"{name}: data {workspace.data_dir(assignment)}; weights {kinds}; reference {reference}")
    return 0


def cmd_weights(args) -> int:
    from .weights import CHECKPOINTS, WeightStore
    store = WeightStore(args.cache / "torch")
    if args.action == "add":
        for path in args.files:
            print(f"{path}: real checkpoint of {store.add_real(path)} stored")
    elif args.action == "standins":
        written = store.ensure(list(CHECKPOINTS))
        print(f"stand-ins written: {', '.join(written) or 'none needed'}")
    for row in store.describe(list(CHECKPOINTS)):
        print(f"{row['model']:<14} {row['kind']:<9} {row['file']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grade.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    batch = commands.add_parser("batch", help="grade every entry of a submissions folder")
    batch.add_argument("folder", type=Path)
    batch.add_argument("--out", type=Path, required=True)
    batch.add_argument("--workers", type=int, default=2)
    batch.add_argument("--quiet", action="store_true", help="no progress bar")
    batch.add_argument("--marks", type=Path, help="a TA's marks of the manual items: to_mark.csv with points filled in")
    _common(batch)
    batch.set_defaults(run=cmd_batch)

    check = commands.add_parser("check", help="grade one notebook or module and print a per-task table")
    check.add_argument("notebook", type=Path)
    check.add_argument("--out", type=Path, help="where report.html goes (default out/check/)")
    _common(check)
    check.set_defaults(run=cmd_check)

    setup = commands.add_parser("setup", help="make weights, fixture data and reference values")
    setup.add_argument("--assignment", "-a", action="append", choices=assignments.names())
    setup.add_argument("--data", type=Path, default=REPO / "data")
    setup.add_argument("--cache", type=Path, default=REPO / ".cache")
    setup.set_defaults(run=cmd_setup)

    weights = commands.add_parser("weights", help="the weight store: status, add real checkpoints, stand-ins")
    weights.add_argument("action", choices=["status", "add", "standins"])
    weights.add_argument("files", nargs="*", type=Path)
    weights.add_argument("--cache", type=Path, default=REPO / ".cache")
    weights.set_defaults(run=cmd_weights)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "folder", None) is not None and not args.folder.is_dir():
        print(f"grade.py: {args.folder} is not a folder", file=sys.stderr)
        return 2
    if getattr(args, "notebook", None) is not None and not args.notebook.exists():
        print(f"grade.py: {args.notebook} does not exist", file=sys.stderr)
        return 2
    return args.run(args)
