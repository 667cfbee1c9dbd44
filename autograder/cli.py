"""grade.py: the command line of TAs, students and the LMS container.

    python grade.py setup   [--assignment A]...          weights, fixture data, reference values
    python grade.py batch   FOLDER --assignment A --out DIR [--workers N | --scheduler tcp://HOST:8786]
                            [--submission-times CSV] [--id-pattern REGEX]   late policy, student ids
    python grade.py check   NOTEBOOK --assignment A [--out DIR]
    python grade.py weights status | add FILE... | standins
    python grade.py lms build --assignment A --out DIR          Gradescope bundle + Dockerfile
    python grade.py student-bundle --assignment A --out DIR     template, data, self-check
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
    parser.add_argument("--isolation", choices=["auto", "bwrap", "uid", "none"], default="auto",
                        help="auto: bubblewrap where it works, else a private uid where root, else plain "
                             "processes; uid: no namespaces, a private uid only (the report says which)")
    parser.add_argument("--cell-timeout", type=float, help="seconds per cell (default: the assignment's)")
    parser.add_argument("--timeout", type=float, help="seconds per submission (default: the assignment's)")
    parser.add_argument("--memory-gib", type=float, help="memory limit of the student's kernel")


def _overrides(args, concurrent_kernels: int = 1, spares: int = 0) -> tuple:
    # Share the cores between the kernels that run at once, a core kept for each worker's spare
    # kernel while it imports torch: an OpenMP kernel whose threads find their cores busy slows
    # down several times over (measured: fruits' cells 1.4 s with 1 thread, 3.8 s with 2 beside a spare).
    cores = os.cpu_count() or 1
    threads = max(1, (cores - spares) // max(1, concurrent_kernels))
    pairs = {"cell_timeout_s": args.cell_timeout, "total_timeout_s": args.timeout,
             "memory_bytes": int(args.memory_gib * 2**30) if args.memory_gib else None,
             "threads": threads}
    return tuple((k, v) for k, v in pairs.items() if v is not None)


def cmd_batch(args) -> int:
    from .batch import BatchJob, run_batch
    from .cluster import ClusterError
    from .late import CourseRuleError, batch_summary
    if args.marks is not None and not args.marks.is_file():
        print(f"grade.py: marks file {args.marks} does not exist", file=sys.stderr)
        return 2
    # Where kernels are forked from a worker's fork server (sandbox/forkserver.py) a spare costs a
    # fork and ipykernel's start, not torch's imports: every worker keeps one, and no core is kept
    # for it. Otherwise a spare (which imports torch itself) only where a core is free for it while
    # the workers' kernels run: on a machine whose every core has a worker, such spares cost
    # throughput (measured: 2 workers on 2 cores, 12 fruits entries, 46 s without spares, 50 s with).
    from .sandbox import forks_kernels
    forked = forks_kernels(args.isolation)
    warm = forked or args.workers < (os.cpu_count() or 1)
    job = BatchJob(args.assignment, args.out.resolve(), args.cache.resolve(), args.data.resolve(),
                   args.isolation, _overrides(args, args.workers, spares=args.workers if warm and not forked else 0),
                   args.marks.resolve() if args.marks else None,
                   args.submission_times.resolve() if args.submission_times else None, args.id_pattern,
                   reuse_runs=not args.rerun, warm_kernels=warm,
                   **({"kept_runs_bytes": int(args.kept_runs_gib * 2**30)} if args.kept_runs_gib is not None else {}))
    _warn_if_kernels_may_read(args.folder, args.isolation, args.scheduler)
    try:
        rows = run_batch(job, args.folder, workers=args.workers, progress=not args.quiet, scheduler=args.scheduler)
    except (CourseRuleError, ClusterError) as error:   # course.toml, times, id pattern; the Dask scheduler or workers
        print(f"grade.py: {error}", file=sys.stderr)
        return 2
    graded = sum(r["status"] == "graded" for r in rows)
    print(f"{len(rows)} submissions ({graded} graded, {len(rows) - graded} not gradable or failed)")
    for line in batch_summary(rows):
        print(line)
    print(f"gradebook: {job.out / 'grades.csv'}")
    print(f"overview:  {job.out / 'index.html'}")
    if (job.out / "to_mark.csv").exists():
        print(f"to mark:   {job.out / 'to_mark.csv'} (fill in points, pass it back with --marks)")
    return 0


def _warn_if_kernels_may_read(folder: Path, isolation: str, scheduler: str | None) -> None:
    """Without bubblewrap each kernel sees the real file tree as its private uid: the grader shuts its
    own folders, but the TA's submissions folder is theirs; say so when others may read it."""
    from .sandbox import kernels_see_the_file_tree
    if scheduler is None and folder.exists() and kernels_see_the_file_tree(isolation) \
            and folder.stat().st_mode & 0o005:
        print(f"grade.py: warning: kernels run without bubblewrap and {folder} is readable by other users, "
              "so each submission's code could read the others; `chmod o-rx` it first", file=sys.stderr)


def _id_pattern(text: str) -> str:
    from .intake import compile_id_pattern
    try:
        compile_id_pattern(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


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


def _data_folder_found(args) -> bool:
    """--data must hold the assignment's folder (the default, the fixture data, is made by setup)."""
    name = assignments.load(args.assignment).data_name
    if args.data != REPO / "data" and not (args.data / name).is_dir():
        print(f"grade.py: {args.data} holds no {name}/ folder", file=sys.stderr)
        return False
    return True


def cmd_lms_build(args) -> int:
    from .lms import BundleError, build_bundle
    if not _data_folder_found(args):
        return 2
    overrides = {k: v for k, v in _overrides(args) if k != "threads"}
    try:
        built = build_bundle(args.assignment, args.out, data_root=args.data, cache=args.cache,
                             isolation=args.isolation, limit_overrides=overrides)
    except BundleError as error:
        print(f"grade.py lms build: {error}", file=sys.stderr)
        return 2
    weights = ", ".join(f"{w['model']} ({w['kind']})" for w in built.config["weights"])
    print(f"Gradescope bundle: {built.zip_path} ({built.size_bytes / 2**20:.1f} MiB, {built.files} files; "
          f"{built.config['data']['kind']} data; weights {weights})")
    print(f"Dockerfile:        {built.dockerfile}  (docker build --build-arg ASSIGNMENT={args.assignment} "
          f"-t autograder-{args.assignment} {built.dockerfile.parent})")
    limits = assignments.load(args.assignment, **built.config["limits"]).limits
    print(f"Set Gradescope's autograder timeout above {limits.total_timeout_s:.0f} s (the submission's limit).")
    return 0


def cmd_student_bundle(args) -> int:
    from .student_bundle import build_student_bundle
    if not _data_folder_found(args):
        return 2
    try:
        built = build_student_bundle(args.assignment, args.out, data_root=args.data, cache=args.cache,
                                     with_weights=args.with_weights)
    except NotADirectoryError as error:
        print(f"grade.py student-bundle: {error}", file=sys.stderr)
        return 2
    print(f"student bundle: {built.zip_path} ({built.size_bytes / 2**20:.1f} MiB, {built.files} files"
          f"{', weights included' if args.with_weights else ', no weights'})")
    print(f"students: unzip it, work in {built.folder_name}/{args.assignment}.ipynb, then run "
          f"`python selfcheck.py` in {built.folder_name}/")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grade.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    batch = commands.add_parser("batch", help="grade every entry of a submissions folder")
    batch.add_argument("folder", type=Path)
    batch.add_argument("--out", type=Path, required=True)
    batch.add_argument("--workers", type=int, default=2)
    batch.add_argument("--scheduler", metavar="ADDRESS",
                       help="grade on a Dask cluster (e.g. tcp://HOST:8786): each submission a task on its "
                            "workers, --workers ignored; see the README")
    batch.add_argument("--quiet", action="store_true", help="no progress bar")
    batch.add_argument("--rerun", action="store_true",
                       help="run every entry again, even where a kept run of the same notebook, data, weights, "
                            "limits and harness exists (by default a regrade reuses it: runcache.py)")
    batch.add_argument("--kept-runs-gib", type=float, metavar="GIB",
                       help="bound on the runs kept for regrades (every assignment's, in --cache); after the batch the "
                            "ones used longest ago are removed (default: runcache.DEFAULT_KEPT_BYTES, 4 GiB)")
    batch.add_argument("--marks", type=Path, help="a TA's marks of the manual items: to_mark.csv with points filled in")
    batch.add_argument("--submission-times", type=Path, metavar="CSV",
                       help="the LMS's times (columns id,submitted_at): applies graders/<a>/course.toml's late policy")
    batch.add_argument("--id-pattern", type=_id_pattern, metavar="REGEX",
                       help="student id from the file name: a regex with a group `id` "
                            "(default: course.toml's, else the name without extension)")
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

    lms = commands.add_parser("lms", help="LMS autograder bundles: `lms build` writes Gradescope's zip and a Dockerfile")
    lms_actions = lms.add_subparsers(dest="lms_action", required=True)
    lms_build = lms_actions.add_parser("build", help="write DIR/autograder_<assignment>.zip and DIR/Dockerfile")
    lms_build.add_argument("--out", type=Path, required=True)
    _common(lms_build)
    lms_build.set_defaults(run=cmd_lms_build)

    student = commands.add_parser("student-bundle", help="what a student downloads: template, data, self-check")
    student.add_argument("--assignment", "-a", required=True, choices=assignments.names())
    student.add_argument("--out", type=Path, required=True)
    student.add_argument("--data", type=Path, default=REPO / "data")
    student.add_argument("--cache", type=Path, default=REPO / ".cache")
    student.add_argument("--with-weights", action="store_true",
                         help="ship the weight store's checkpoints (default: the self-check finds or makes them)")
    student.set_defaults(run=cmd_student_bundle)
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
