"""Grade a whole submissions folder with a pool of worker processes and a progress bar.

The reference values are prepared once, in this process, before any worker starts; each worker
then builds one SubmissionGrader and grades entry after entry. A worker that dies (the grader
process itself, never the sandboxed student code) costs only the entry it was grading.
"""
from __future__ import annotations

import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from . import assignments, late
from .intake import compile_id_pattern, discover, student_id, submission_id
from .manual import read_marks, write_to_mark
from .reports import write_gradebook
from .runcache import DEFAULT_KEPT_BYTES, prune
from .workspace import Workspace


@dataclass(frozen=True)
class BatchJob:
    assignment: str
    out: Path
    cache: Path
    data_root: Path
    isolation: str = "auto"
    limit_overrides: tuple = ()       # (("cell_timeout_s", 30), ...)
    marks: Path | None = None         # a TA's marks of the manual items (CSV: id, task, points, comment)
    submission_times: Path | None = None   # the LMS's export (CSV: id, submitted_at); None: lateness not checked
    id_pattern: str | None = None     # regex with a group `id` for the student id; None: course.toml's, else the name
    reuse_runs: bool = True           # grade a kept run of an unchanged entry again (runcache.py); False: --rerun
    warm_kernels: bool = True         # each worker keeps a spare kernel started ahead (execution.py)
    kept_runs_bytes: int = DEFAULT_KEPT_BYTES   # bound on <cache>/runs, pruned after the batch (least recently used first)

    def load(self):
        return assignments.load(self.assignment, **dict(self.limit_overrides))

    def workspace(self) -> Workspace:
        return Workspace(cache=self.cache, data_root=self.data_root)


_worker_grader = None


def _start_worker(job: BatchJob) -> None:
    global _worker_grader
    from multiprocessing.util import Finalize
    from .pipeline import SubmissionGrader
    _worker_grader = SubmissionGrader(job.load(), job.workspace(), isolation=job.isolation,
                                      marks=read_marks(job.marks), warm=job.warm_kernels,
                                      reuse_runs=job.reuse_runs, reports_in_background=True)
    # A pool's worker ends with os._exit (no atexit): multiprocessing's finalizers still run.
    Finalize(_worker_grader, _worker_grader.close, exitpriority=10)


def _grade_in_worker(entry: str, out: str, lateness, student) -> dict:
    return _worker_grader.grade(Path(entry), Path(out), lateness=lateness, student=student)


def students_and_lateness(job: BatchJob, entries: list[Path]) -> tuple[dict, dict]:
    """Per entry id: the student id from its name, and its Lateness (None without submission times).
    A bad course.toml, times file or pattern raises late.CourseRuleError before any grading."""
    course = late.load_course(job.assignment)
    try:
        pattern = compile_id_pattern(job.id_pattern if job.id_pattern is not None else course.id_pattern)
    except ValueError as error:
        raise late.CourseRuleError(str(error)) from None
    times = late.read_submission_times(job.submission_times, course.late.zone) if job.submission_times else None
    students = {submission_id(e): student_id(e, pattern) for e in entries}
    lateness = {sid: late.lateness_for(course.late, times, student, sid) if times is not None else None
                for sid, student in students.items()}
    return students, lateness


def run_batch(job: BatchJob, folder: Path, workers: int = 2, progress: bool = True,
              scheduler: str | None = None) -> list[dict]:
    """`scheduler`: a Dask scheduler's address; its workers grade the entries instead of a local pool
    of `workers` processes (cluster.py); an unreachable one raises cluster.ClusterError."""
    entries = discover(folder)
    assignment = job.load()
    students, lateness = students_and_lateness(job, entries)   # a bad times file stops here, not after grading
    job.workspace().prepare(assignment)  # reference values once, before the workers
    cluster = None
    if scheduler is not None:   # connect, and check the workers match this machine's harness and weights
        from .cluster import connect
        cluster = connect(scheduler, job)
        if progress:
            print(cluster.describe(), file=sys.stderr)
    job.out.mkdir(parents=True, exist_ok=True)
    rows: dict[str, dict] = {}
    pending = list(entries)
    bar = tqdm(total=len(entries), desc=f"grading {assignment.name}", unit="submission", disable=not progress)
    if cluster is not None:   # each entry a task on the cluster; the gradebook and pages below as for a local pool
        rows.update(cluster.grade(job, assignment, pending, lateness, students, bar))
        pending = []
    for _attempt in range(3):  # a broken pool is rebuilt for the entries it did not finish
        if not pending:
            break
        context = multiprocessing.get_context("spawn")  # workers do not inherit the parent's threads
        with ProcessPoolExecutor(max_workers=max(1, workers), mp_context=context,
                                 initializer=_start_worker, initargs=(job,)) as pool:
            futures = {pool.submit(_grade_in_worker, str(e), str(job.out), lateness[submission_id(e)],
                                   students[submission_id(e)]): e for e in pending}
            still_pending = []
            for future in as_completed(futures):
                entry = futures[future]
                try:
                    rows[submission_id(entry)] = future.result()
                    bar.update(1)
                except BrokenProcessPool:
                    still_pending.append(entry)
                except Exception as error:  # noqa: BLE001
                    rows[submission_id(entry)] = _harness_error_row(assignment, job, entry, error,
                                                                    lateness, students)
                    bar.update(1)
            pending = still_pending
    for entry in pending:
        rows[submission_id(entry)] = _harness_error_row(assignment, job, entry, "the grading worker died",
                                                        lateness, students)
        bar.update(1)
    bar.close()
    _plain_pages_where_missing(job, assignment, rows)
    ordered = [rows[k] for k in sorted(rows)]
    write_gradebook(job.out, assignment, ordered)
    # Every manual item, marked or not, so the same file can be passed back run after run.
    marks = read_marks(job.marks)
    write_to_mark(job.out / "to_mark.csv", [
        {"id": row["id"], "task": v.task, "points": marks.get((row["id"], v.task), ("", ""))[0],
         "comment": marks.get((row["id"], v.task), ("", ""))[1], "answer": v.message.split("Your answer:\n")[-1]}
        for row in ordered for v in row.get("_manual", [])])
    if job.reuse_runs:
        removed, freed = prune(job.cache / "runs", job.kept_runs_bytes)
        if removed:
            print(f"kept runs: removed the {removed} used longest ago ({freed / 2**30:.2f} GiB) to stay within "
                  f"{job.kept_runs_bytes / 2**30:g} GiB (--kept-runs-gib)", file=sys.stderr)
    try:  # integrity.html only flags similar code for a TA: it changes no grade and must never stop the batch
        from .integrity import write_integrity_page
        write_integrity_page(job.out / "integrity.html", assignment, entries)
    except Exception as error:  # noqa: BLE001
        tqdm.write(f"integrity.html not written: {type(error).__name__}: {error}", file=sys.stderr)
    return ordered


def _plain_pages_where_missing(job: BatchJob, assignment, rows: dict[str, dict]) -> None:
    """Workers draw report.html on a thread after the grade is returned (pipeline.py): a worker that
    died in between left a graded entry without its page. A plain one gives the grade."""
    from .reports.html import write_plain_report
    missing = [row for row in rows.values() if not (job.out / row["id"] / "report.html").exists()]
    weights = job.workspace().store.describe(list(assignment.models)) if missing else []
    for row in missing:
        write_plain_report(job.out / row["id"] / "report.html", assignment.name, row["id"], row["raw"],
                           assignment.max_points, weights, f"{row['message']} The detailed report was not "
                           "drawn (its grading worker ended); a TA can regrade the entry for it.")


def _harness_error_row(assignment, job: BatchJob, entry: Path, error, lateness: dict, students: dict) -> dict:
    """Record the entry as not graded, with a report saying so, when its worker failed."""
    from .pipeline import SubmissionGrader, gradebook_row
    from .reports import write_report, write_results_json
    grader = SubmissionGrader(assignment, job.workspace(), isolation=job.isolation)
    sid = submission_id(entry)
    message = f"The autograder failed on this submission ({error}); a TA will regrade it."
    grade = grader.failed_grade(sid, "harness error", message)
    out = job.out / sid
    out.mkdir(parents=True, exist_ok=True)
    write_results_json(out / "results.json", grade, 0.0, message, lateness[sid])
    write_report(out / "report.html", assignment, grade, None, grader.weights, message, late=lateness[sid])
    return gradebook_row(assignment, grade, message, lateness[sid], students[sid])
