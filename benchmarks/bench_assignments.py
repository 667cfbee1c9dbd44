"""Per assignment: wall time and peak memory to grade its bundled correct submission.

    .venv/bin/python benchmarks/bench_assignments.py [ASSIGNMENT ...]

Each grading is a separate `grade.py check` process (reference values already cached by
`grade.py setup`), so its peak resident memory, taken from wait4() over the whole process tree
(the grader, its sandboxed kernel and everything they started), is that submission's alone.
"""
from __future__ import annotations

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


def grade_once(name: str, entry: Path) -> tuple[float, float, str]:
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        process = subprocess.Popen([sys.executable, "grade.py", "check", str(entry), "--assignment", name,
                                    "--out", out], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                   text=True)
        output = process.stdout.read()
        _pid, _status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
    total = next((line for line in output.splitlines() if line.startswith("total")), "total ?")
    return seconds, usage.ru_maxrss / 1024, " ".join(total.split()[1:])


def main() -> None:
    names = sys.argv[1:] or assignments.names()
    subprocess.run([sys.executable, "grade.py", "setup"] + [a for n in names for a in ("-a", n)], cwd=REPO,
                   check=True, stdout=subprocess.DEVNULL)
    print(f"machine: {os.cpu_count()} cores; `grade.py check` of each bundled correct example, reference cached")
    print(f"{'assignment':<12} {'example':<26} {'wall s':>7} {'peak MiB':>9}  score")
    for name in names:
        entry = correct_example(name)
        seconds, peak, score = grade_once(name, entry)
        print(f"{name:<12} {entry.name:<26} {seconds:7.1f} {peak:9.0f}  {score}")


if __name__ == "__main__":
    main()
