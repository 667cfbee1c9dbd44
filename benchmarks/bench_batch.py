"""Batch throughput: 40 fruits submissions with 1 and 2 workers; a regrade with the reference cached.

    .venv/bin/python benchmarks/bench_batch.py [--count 40] [--max-load 1.0] [--wait-minutes 15]

The batch is made here in a temporary folder: copies of the correct entries that ship with the
repository (submissions/fruits and tests/corpus/fruits: notebooks, modules, a folder, a zip), under
new names. Each run is `grade.py batch --quiet` as a TA runs it, in its own process:
1. 2 workers, a fresh --cache holding a copy of the weight store only (probes and reference values
   are made first, every entry is run);
2. the same command again: the reference cached and every run kept (the regrade after a grader fix);
3. 2 workers with --rerun: the reference cached, every entry run again;
4. 1 worker with --rerun.
For runs 3 and 4 it also prints how many cores the machine kept busy (/proc/stat, the whole machine)
and the CPU one entry cost: with every entry costing C core-seconds, 2 workers on N cores grade at
most N / C entries a second, which bounds their ratio to 1 worker.
Takes minutes; each figure is one run (ratios from this one run). Start it on a quiet machine: it
waits, up to --wait-minutes, for the 1-minute load average to drop below --max-load, and prints the
load before and after.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parent.parent
CORRECT = [REPO / "submissions" / "fruits" / "alice_correct.ipynb", REPO / "submissions" / "fruits" / "carol_module.py",
           *sorted((REPO / "tests" / "corpus" / "fruits").glob("correct_*"))]


def make_batch(folder: Path, count: int) -> None:
    for index in range(count):
        source = CORRECT[index % len(CORRECT)]
        target = folder / f"s{index + 1:03d}_{source.name}"
        (shutil.copytree if source.is_dir() else shutil.copy)(source, target)


def wait_for_quiet(max_load: float, wait_minutes: float) -> None:
    deadline = time.monotonic() + wait_minutes * 60
    while os.getloadavg()[0] >= max_load and time.monotonic() < deadline:
        print(f"load {os.getloadavg()[0]:.2f} >= {max_load}: waiting 60 s for a quiet machine", flush=True)
        time.sleep(60)
    if os.getloadavg()[0] >= max_load:
        print(f"WARNING: still busy after {wait_minutes:g} min (load {os.getloadavg()[0]:.2f}); measuring anyway")


def busy_core_seconds() -> float:
    """CPU time the whole machine has spent busy since boot (/proc/stat: all but idle and iowait)."""
    ticks = [int(field) for field in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def run_batch(batch: Path, out: Path, cache: Path, workers: int, *extra: str) -> tuple[float, float, pd.DataFrame]:
    """Wall seconds, the machine's busy core-seconds meanwhile, and the gradebook."""
    started, busy_before = time.perf_counter(), busy_core_seconds()
    subprocess.run([sys.executable, "grade.py", "batch", str(batch), "--assignment", "fruits", "--out", str(out),
                    "--workers", str(workers), "--cache", str(cache), "--quiet", *extra],
                   cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    return seconds, busy_core_seconds() - busy_before, pd.read_csv(out / "grades.csv")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--max-load", type=float, default=1.0)
    parser.add_argument("--wait-minutes", type=float, default=15)
    args = parser.parse_args()

    subprocess.run([sys.executable, "grade.py", "setup", "-a", "fruits"], cwd=REPO, check=True,
                   stdout=subprocess.DEVNULL)   # weights and data to copy from
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        batch = scratch / "batch"
        batch.mkdir()
        make_batch(batch, args.count)
        cache = scratch / "cache"
        shutil.copytree(REPO / ".cache" / "torch", cache / "torch")   # weights, but no probes or reference
        wait_for_quiet(args.max_load, args.wait_minutes)
        load_before = os.getloadavg()[0]
        first, _busy, grades_first = run_batch(batch, scratch / "out-first", cache, 2)
        regrade, _busy, grades_regrade = run_batch(batch, scratch / "out-regrade", cache, 2)
        double, double_busy, grades_double = run_batch(batch, scratch / "out-double", cache, 2, "--rerun")
        single, single_busy, grades_single = run_batch(batch, scratch / "out-single", cache, 1, "--rerun")
        load_after = os.getloadavg()[0]

    full = [int((g["total"] == g["max"]).sum()) for g in (grades_first, grades_regrade, grades_double, grades_single)]
    per_minute = lambda seconds: args.count / seconds * 60  # noqa: E731
    print(f"machine: {os.cpu_count()} cores; batch of {args.count} fruits submissions (copies of {len(CORRECT)} "
          f"correct entries); load average {load_before:.2f} before, {load_after:.2f} after; one run each")
    print(f"full marks: {', '.join(map(str, full))} of {args.count} (runs 1-4)")
    print(f"1 worker,  every entry run, reference cached   {single:7.1f} s   {per_minute(single):5.2f} submissions/min")
    print(f"2 workers, every entry run, reference cached   {double:7.1f} s   {per_minute(double):5.2f} submissions/min")
    print(f"2 workers / 1 worker throughput                {single / double:7.2f}x")
    # The machine's CPU during each: how many cores a run kept busy, and the CPU one entry cost. Two
    # workers cannot beat the cores divided by that cost, whatever one worker does.
    for label, seconds, busy in (("1 worker ", single, single_busy), ("2 workers", double, double_busy)):
        print(f"{label} busy cores {busy / seconds:4.2f} of {os.cpu_count()}, {busy / args.count:4.2f} core-s per entry")
    print(f"2 workers, empty cache (weights only)          {first:7.1f} s   (probes and reference made first)")
    print(f"2 workers, regrade: reference cached, runs kept {regrade:6.1f} s   {regrade / first:5.2f}x of the first run")
    print(f"2 workers, --rerun: reference cached           {double:7.1f} s   {double / first:5.2f}x of the first run")


if __name__ == "__main__":
    main()
