"""Hostile and broken submissions in ONE batch with correct ones: nothing gained, nothing lost.

The entries of tests/hostile/ (written by tests/hostile/build.py; expected verdicts in its
expected.toml) and two correct corpus entries are staged into one folder and graded with one
`grade.py batch` run, as a TA would. Then:
- every entry gets exactly its expected verdicts, and the correct ones full marks;
- nothing outside the sandboxes changed: the grader's files the attacks aimed at (a canary, the
  reference, the weight store, the data, torch itself, a fake $HOME and /autograder root) are
  byte for byte as before, the batch's own outputs are the harness's, no process and no cgroup or
  sandbox folder of the run is left, and the grader's loopback listener got no connection;
- the batch's wall time stays within what its per-submission limit allows.
Every attack is bounded and aimed only at the paths, port and processes this test sets up.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from autograder.intake import submission_id
from autograder.sandbox import bubblewrap_works
from autograder.sandbox.jail import _safe

REPO = Path(__file__).resolve().parent.parent
HOSTILE = REPO / "tests" / "hostile"
EXPECTED = tomllib.loads((HOSTILE / "expected.toml").read_text())
CORRECT = ["correct_identity_v1.ipynb", "correct_module_v2.py"]   # from tests/corpus/fruits/
CELL_TIMEOUT_S, TIMEOUT_S, WORKERS = 20, 150, 2
POINTS = {"F1": 2, "F2": 2, "F3": 2, "F4": 3, "F5": 2, "F6": 1, "F7": 1, "F8": 2}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (bubblewrap_works() and shutil.which("setpriv")),
                       reason="the attacks are only safe to run inside the bubblewrap sandbox (root, namespaces)"),
]


def _digest(path: Path) -> str:
    """A content digest of a file, or of a folder's names and contents."""
    h = hashlib.sha256()
    paths = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for p in paths:
        h.update(str(p.relative_to(path) if path.is_dir() else p.name).encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def _sid(entry: str) -> str:
    return submission_id(Path(entry))


def _processes_with(marker: str) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if marker.encode() in cmdline.read_bytes():
                found.append(cmdline.parent.name)
        except OSError:
            continue
    return found


class HostileBatch:
    """Stages the entries, sets up the targets, runs the batch, and keeps what the checks need."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.folder, self.out = tmp / "submissions", tmp / "out"
        # Stand-ins for the grader's home and Gradescope's /autograder: folders of this machine
        # outside every sandbox, named to the attacks by their absolute paths.
        self.home, self.autograder = tmp / "grader-home", tmp / "autograder"
        self.canary = tmp / "canary.txt"
        self.marker = f"599.{secrets.randbelow(10**8):08d}"   # a unique `sleep` argument
        for folder in (self.folder, self.out, self.home, self.autograder / "results"):
            folder.mkdir(parents=True)
        self.canary.write_text("the grader's own file")
        (self.home / "notes.txt").write_text("the grader's home")
        store = REPO / ".cache" / "torch"
        import torch
        self.watched = {
            "canary": self.canary, "grader home": self.home, "autograder root": self.autograder,
            "reference": REPO / "reference" / "fruits.py", "graders": REPO / "graders" / "fruits",
            "data": REPO / "data" / "fruits", "torch": Path(torch.__file__),
            "weights": store / "hub" / "checkpoints" / "resnet18-f37072fd.pth",
        }
        self.before = {name: _digest(path) for name, path in self.watched.items()}
        self.sandbox_base = Path(tempfile.gettempdir()) / "autograder-sandboxes"
        self.sandbox_base.mkdir(exist_ok=True)
        self.sandboxes_before = set(self.sandbox_base.iterdir()) if self.sandbox_base.exists() else set()

    def stage(self, port: int) -> None:
        values = {"__OUT__": str(self.out), "__HOME__": str(self.home), "__AUTOGRADER__": str(self.autograder),
                  "__CANARY__": str(self.canary), "__REPO__": str(REPO), "__WEIGHTS__": str(REPO / ".cache" / "torch"),
                  "__PORT__": str(port), "__MARKER__": self.marker}
        for entry in EXPECTED:
            source, target = HOSTILE / entry, self.folder / entry
            if source.is_dir():
                shutil.copytree(source, target)
            elif source.suffix == ".ipynb" and source.stat().st_size:
                text = source.read_text(encoding="utf-8")
                for key, value in values.items():
                    text = text.replace(key, value)
                target.write_text(text, encoding="utf-8")
            else:
                shutil.copyfile(source, target)
        for entry in CORRECT:
            shutil.copyfile(REPO / "tests" / "corpus" / "fruits" / entry, self.folder / entry)

    def run(self) -> None:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        listener.setblocking(False)
        self.stage(listener.getsockname()[1])
        started = time.monotonic()
        self.completed = subprocess.run(
            [sys.executable, "grade.py", "batch", str(self.folder), "--assignment", "fruits", "--out", str(self.out),
             "--workers", str(WORKERS), "--quiet", "--rerun", "--cell-timeout", str(CELL_TIMEOUT_S), "--timeout", str(TIMEOUT_S)],
            cwd=REPO, capture_output=True, text=True, timeout=3600)
        self.wall_s = time.monotonic() - started
        try:
            listener.accept()[0].close()
            self.connections = 1
        except BlockingIOError:
            self.connections = 0
        finally:
            listener.close()
        self.leftover_processes = _processes_with(self.marker)
        self.after = {name: _digest(path) for name, path in self.watched.items()}
        # Only this batch's leftovers count (sandbox folders are named <id>-<random>).
        # A worker's spare kernel waits in a sandbox named warm-<random> until a submission takes it.
        ours = tuple(_safe(_sid(e)) + "-" for e in [*EXPECTED, *CORRECT]) + ("warm-",)
        self.new_sandboxes = {p for p in set(self.sandbox_base.iterdir()) - self.sandboxes_before
                              if p.name.startswith(ours)}
        self.cgroups = [p for p in Path("/sys/fs/cgroup").glob("**/autograder-*")
                        if p.is_dir() and p.name.removeprefix("autograder-").startswith(ours)]

    def results(self, entry: str) -> dict:
        return json.loads((self.out / _sid(entry) / "results.json").read_text())

    def printed(self, entry: str) -> dict:
        """The `@@{json}` lines the entry's attack cells printed (see build.py's `say`)."""
        said = {}
        executed = nbformat.read(str(self.out / _sid(entry) / "executed.ipynb"), as_version=4)
        for cell in executed.cells:
            for output in cell.get("outputs", []):
                for line in output.get("text", "").splitlines() if output.get("output_type") == "stream" else []:
                    if line.startswith("@@"):
                        said.update(json.loads(line[2:]))
        return said


@pytest.fixture(scope="module")
def batch(tmp_path_factory) -> HostileBatch:
    run = HostileBatch(tmp_path_factory.mktemp("hostile"))
    run.run()
    assert run.completed.returncode == 0, run.completed.stdout[-3000:] + run.completed.stderr[-3000:]
    return run


@pytest.mark.parametrize("entry", [*EXPECTED, *CORRECT])
def test_entry_gets_its_expected_verdicts(batch, entry):
    spec = EXPECTED.get(entry, {"fail": []})
    results = batch.results(entry)
    scores: dict[str, float] = {}
    for test in results["tests"]:
        task = test["name"].split()[0]
        scores[task] = scores.get(task, 0.0) + test["score"]
    expected = {task: 0.0 if task in spec["fail"] else float(points) for task, points in POINTS.items()}
    detail = "\n".join(f"{t['name']}: {t.get('status')} {t['output'][:200]}" for t in results["tests"])
    assert scores == pytest.approx(expected), f"{results['output']}\n{detail}"
    assert results["score"] == pytest.approx(sum(expected.values()))
    if "message" in spec:
        assert spec["message"].lower() in results["output"].lower(), results["output"]
    assert (batch.out / _sid(entry) / "report.html").is_file()


def test_gradebook_has_every_entry_with_its_status(batch):
    frame = pd.read_csv(batch.out / "grades.csv").set_index("id")
    for entry in [*EXPECTED, *CORRECT]:
        row = frame.loc[_sid(entry)]
        assert row["status"] == EXPECTED.get(entry, {}).get("status", "graded"), (entry, row["message"])
    assert frame["total"].max() <= sum(POINTS.values())


def test_nothing_outside_the_sandboxes_changed(batch):
    changed = [name for name in batch.before if batch.before[name] != batch.after[name]]
    assert not changed, f"changed by the batch: {changed}"
    assert sorted(p.name for p in batch.home.iterdir()) == ["notes.txt"]
    assert list((batch.autograder / "results").iterdir()) == []
    said = batch.printed("writes_outside.ipynb")
    for key in ("out_results", "out_grades", "out_report", "autograder_results", "grader_home"):
        assert said[key] != "done", (key, said[key])
    assert said["home_is_the_sandbox"] == "done"    # $HOME is the sandbox's own folder
    vandal = batch.printed("deletes_files.ipynb")
    assert all(value != "done" for value in vandal.values()), vandal


def test_batch_outputs_are_the_harness_s_own(batch):
    for entry in ("writes_outside.ipynb", *CORRECT):
        assert batch.results(entry)["score"] == sum(POINTS.values())
    report = (batch.out / "correct_identity_v1" / "report.html").read_text()
    assert '"score": 999' not in report and "fruits" in report
    frame = pd.read_csv(batch.out / "grades.csv")
    assert len(frame) == len(EXPECTED) + len(CORRECT)


def test_no_process_cgroup_or_sandbox_folder_is_left(batch):
    assert batch.leftover_processes == [], "background processes of a submission outlived its run"
    assert batch.cgroups == []
    assert batch.new_sandboxes == set()


def test_reference_and_graders_were_not_found(batch):
    said = batch.printed("snoop_reference.ipynb")
    leaks = [p for p in said["found"] if str(REPO) in p or "/reference/" in p or "/graders/" in p]
    assert leaks == [], leaks
    for name in ("reference", "reference.fruits", "graders", "graders.fruits", "autograder"):
        assert said["import_" + name].startswith("ModuleNotFoundError"), said["import_" + name]
    assert said["read_reference"].startswith(("FileNotFoundError", "PermissionError")), said["read_reference"]
    assert not [k for k in said["environment"] if re.search("PYTEST|VIRTUAL_ENV|AUTOGRADER|REPO", k)]


def test_network_is_cut_and_the_grader_s_port_got_nothing(batch):
    said = batch.printed("network.ipynb")
    assert said["connect_grader_loopback"].startswith("ConnectionRefusedError"), said
    assert said["interfaces"] == ["lo"] and said["routes"] == []
    assert batch.connections == 0


def test_output_flood_is_capped_in_the_stored_notebook(batch):
    executed = batch.out / "output_flood" / "executed.ipynb"
    assert executed.stat().st_size < 8 * 2**20
    assert "was discarded" in executed.read_text()


def test_batch_wall_time_is_bounded_by_the_per_submission_limit(batch):
    entries = len(EXPECTED) + len(CORRECT)
    runs = [json.loads(p.read_text()) for p in batch.out.glob("*/run.json")]
    assert runs and max(run["seconds"] for run in runs) <= TIMEOUT_S + 15
    # Each worker grades its share one after another; setup and reports cost a few seconds each.
    bound = (entries / WORKERS + 1) * (TIMEOUT_S + 15)
    assert batch.wall_s < bound, (batch.wall_s, bound)
    print(f"hostile batch: {entries} entries in {batch.wall_s:.0f} s (bound {bound:.0f} s); "
          f"slowest run {max(run['seconds'] for run in runs):.0f} s")
