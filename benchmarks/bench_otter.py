"""A peer: Otter-Grader's `otter run` and our `grade.py check` on the same notebook, equivalent tests.

    .venv/bin/python benchmarks/bench_otter.py [NOTEBOOK] [--repeat 3] [--max-load 1.0] [--wait-minutes 15]

Otter-Grader lives in its own venv, .cache/otter-venv, made here on first use (pip, about a minute):
it would add some 45 packages (Sphinx, playwright...) to the project's venv. A .pth file lets that
venv import torch, torchvision and ipykernel from the project's venv; the packages both hold
(numpy, pandas, nbconvert's stack) are the same versions there. `otter run` needs no Docker.

The autograder zip is built by `otter generate` from benchmarks/otter/tests/ (the fruits checks, see
benchmarks/otter/README.md) and support files made here: expected.npz (our cached reference values),
probes/ (the hidden inputs our graders use) and data/fruits. Both commands run as their users run
them, one process per grading, with the same weight store ($TORCH_HOME) and our reference cached;
ours runs in its sandbox, Otter's kernel has none. Medians of --repeat runs, taken alternately; the
ratio is of figures taken in this one run. Last, our per-submission time inside a batch: one worker
grading the notebook again and again, each grade taking a spare kernel (bench_grading.py's "warm").
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from autograder import assignments  # noqa: E402
from autograder.workspace import Workspace  # noqa: E402

OTTER_VERSION = "7.0.0"
OTTER_VENV = REPO / ".cache" / "otter-venv"
OTTER_TESTS = REPO / "benchmarks" / "otter" / "tests"


def otter_venv() -> Path:
    """The venv's `otter` command, made on first use."""
    otter = OTTER_VENV / "bin" / "otter"
    if not otter.exists():
        print(f"making {OTTER_VENV} with otter-grader=={OTTER_VERSION} (first use only)", flush=True)
        subprocess.run([str(Path(sys.base_prefix) / "bin" / "python3"), "-m", "venv", str(OTTER_VENV)], check=True)
        subprocess.run([str(OTTER_VENV / "bin" / "pip"), "install", "-q", "--disable-pip-version-check",
                        f"otter-grader=={OTTER_VERSION}"], check=True)
        site = next((OTTER_VENV / "lib").glob("python3*/site-packages"))
        # Appended after the venv's own packages: Otter's pins win, torch comes from the project's venv.
        (site / "zz-project-venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    check = subprocess.run([str(OTTER_VENV / "bin" / "python"), "-c", "import otter, torch, torchvision, ipykernel"],
                           capture_output=True, text=True)
    if check.returncode != 0:
        raise SystemExit(f"{OTTER_VENV} cannot import otter, torch, torchvision and ipykernel:\n{check.stderr[-2000:]}"
                         f"\nremove {OTTER_VENV} to make it again")
    return otter


def build_autograder(otter: Path, workspace: Workspace, folder: Path) -> Path:
    """Otter's autograder zip: our tests' equivalents, our reference values, our probes, the data."""
    assignment = assignments.load("fruits")
    reference = workspace.reference(assignment)
    expected = {"classes": np.array(reference.get("classes"))}
    for name in ("similarities", "network:output", *(f"transform:{f}" for f in
                                                     ("large.jpg", "portrait.jpg", "small.jpg", "wide.jpg"))):
        expected[name] = np.asarray(reference.get(name))
    for name in ("train_features", "test_features", "extract:probe"):
        for label, feature in reference.get(name).items():
            expected[f"{name}:{label}"] = np.asarray(feature)
    np.savez(folder / "expected.npz", **expected)
    probes = workspace.probes_dir(assignment)
    (folder / "probes").mkdir()
    shutil.copytree(probes / "transform", folder / "probes" / "transform")
    for name in ("network_input.npy", "extract_input.npy", "extract_meta.json"):
        shutil.copy(probes / name, folder / "probes" / name)
    shutil.copytree(workspace.data_dir(assignment), folder / "data" / "fruits")
    shutil.copytree(OTTER_TESTS, folder / "tests")
    subprocess.run([str(otter), "generate", "-t", "tests", "-o", "autograder.zip", "--no-config", "--no-requirements",
                    "--no-environment", "expected.npz", "probes", "data"], cwd=folder, check=True,
                   stdout=subprocess.DEVNULL)
    return folder / "autograder.zip"


def time_otter(otter: Path, autograder: Path, notebook: Path, workspace: Workspace) -> tuple[float, str]:
    with tempfile.TemporaryDirectory() as out:
        env = {**os.environ, "TORCH_HOME": str(workspace.store.root)}   # the same weights, offline
        started = time.perf_counter()
        subprocess.run([str(otter), "run", "-a", str(autograder), "-o", out, "--no-logo", str(notebook)],
                       env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        seconds = time.perf_counter() - started
        results = json.loads((Path(out) / "results.json").read_text())
    graded = [t for t in results["tests"] if t.get("max_score")]
    return seconds, f"{sum(t['score'] for t in graded):g}/{sum(t['max_score'] for t in graded):g}"


def time_ours(notebook: Path) -> tuple[float, str]:
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        subprocess.run([sys.executable, "grade.py", "check", str(notebook), "--assignment", "fruits", "--out", out],
                       cwd=REPO, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        seconds = time.perf_counter() - started
        results = json.loads(next(Path(out).glob("*/results.json")).read_text())
    return seconds, f"{results['score']:g}/{sum(t['max_score'] for t in results['tests']):g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebook", nargs="?", type=Path,
                        default=REPO / "submissions" / "fruits" / "alice_correct.ipynb")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--max-load", type=float, default=1.0)
    parser.add_argument("--wait-minutes", type=float, default=15)
    args = parser.parse_args()
    notebook = args.notebook.resolve()
    from bench_batch import wait_for_quiet   # this folder is on sys.path when run as a script

    otter = otter_venv()
    subprocess.run([sys.executable, "grade.py", "setup", "-a", "fruits"], cwd=REPO, check=True,
                   stdout=subprocess.DEVNULL)   # our reference cached, as a TA's machine has it
    workspace = Workspace()
    with tempfile.TemporaryDirectory() as build:
        autograder = build_autograder(otter, workspace, Path(build))
        wait_for_quiet(args.max_load, args.wait_minutes)   # `otter run` took 5.96-8.22 s by the hour's load
        print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; notebook: {notebook}; "
              f"otter-grader {OTTER_VERSION}; repeat {args.repeat}")
        theirs, ours = [], []
        for _ in range(args.repeat):   # alternately, so a change of load hits both
            theirs.append(time_otter(otter, autograder, notebook, workspace))
            ours.append(time_ours(notebook))
    otter_median = statistics.median(t for t, _ in theirs)
    our_median = statistics.median(t for t, _ in ours)
    print(f"otter run          median {otter_median:6.2f} s   runs {', '.join(f'{t:.2f}' for t, _ in theirs)}"
          f"   score {theirs[-1][1]} (no F6: Otter's tests see globals, not outputs)")
    print(f"grade.py check     median {our_median:6.2f} s   runs {', '.join(f'{t:.2f}' for t, _ in ours)}"
          f"   score {ours[-1][1]}")
    print(f"otter / ours       {otter_median / our_median:6.2f}x")
    from bench_grading import time_harness_warm   # this folder is on sys.path when run as a script
    warm = statistics.median(time_harness_warm(notebook, assignments.load("fruits"), workspace, args.repeat))
    print(f"ours in a batch    median {warm:6.2f} s   (one worker's steady state: spare kernels)")
    print(f"otter / ours       {otter_median / warm:6.2f}x (in a batch)")


if __name__ == "__main__":
    main()
