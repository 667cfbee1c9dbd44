"""Per assignment: wall time and peak memory to grade its bundled correct submission.

    .venv/bin/python benchmarks/bench_assignments.py [ASSIGNMENT ...]

Each grading is a separate `grade.py check` process (reference values already cached by
`grade.py setup`). Peak memory is given twice: the grader process (wait4's maximum resident set)
and the student's kernel with everything it started (its cgroup's peak, as run.json records it).
A cgroup's peak counts the file pages its processes read into the page cache first: catsdogs' kernel
peaked at 3217 MiB right after `echo 1 > /proc/sys/vm/drop_caches` and at 1649 MiB in the next run
(torch's libraries, the weights, the data were cached by then). So each assignment is graded once
first, not counted, and the figures are those of a machine whose cache holds them, as in a batch.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from autograder import assignments  # noqa: E402


def correct_example(name: str) -> Path:
    folder = REPO / "submissions" / name
    for candidate in sorted(folder.iterdir()):
        if "correct" in candidate.name:
            return candidate
    raise FileNotFoundError(f"no correct example in {folder}")


def grade_once(name: str, entry: Path) -> tuple[float, float, float | None, str]:
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        process = subprocess.Popen([sys.executable, "grade.py", "check", str(entry), "--assignment", name,
                                    "--out", out], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                   text=True)
        output = process.stdout.read()
        _pid, _status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        run = json.loads(next(Path(out).glob("*/run.json")).read_text())
    total = next((line for line in output.splitlines() if line.startswith("total")), "total ?")
    return seconds, usage.ru_maxrss / 1024, run.get("peak_memory_mib"), " ".join(total.split()[1:])


def main() -> None:
    names = sys.argv[1:] or assignments.names()
    subprocess.run([sys.executable, "grade.py", "setup"] + [a for n in names for a in ("-a", n)], cwd=REPO,
                   check=True, stdout=subprocess.DEVNULL)
    print(f"machine: {os.cpu_count()} cores; `grade.py check` of each bundled correct example, reference cached, "
          "after one grading not counted")
    print(f"{'assignment':<12} {'example':<22} {'wall s':>7} {'grader MiB':>11} {'kernel MiB':>11}  score")
    for name in names:
        entry = correct_example(name)
        grade_once(name, entry)   # the page cache warmed (see above); not counted
        seconds, grader_peak, kernel_peak, score = grade_once(name, entry)
        kernel = f"{kernel_peak:11.0f}" if kernel_peak else f"{'n/a':>11}"
        print(f"{name:<12} {entry.name:<22} {seconds:7.1f} {grader_peak:11.0f} {kernel}  {score}")


if __name__ == "__main__":
    main()
