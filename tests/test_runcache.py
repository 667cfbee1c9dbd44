"""Regrades reuse a submission's run only when nothing that decides it changed (autograder/runcache.py)."""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from autograder.execution import CellRecord, RunRecord
from autograder import runcache
from autograder.runcache import RunCache
from autograder.sandbox import GiB, Limits

REPO = Path(__file__).resolve().parent.parent


def _cache(tmp_path, **changes) -> RunCache:
    settings = dict(inputs=["data-digest", "probes-digest", "weights"], limits=Limits(), isolation="auto",
                    harvest_source="def harvest(ns, ex, probes):\n    ex.write()\n")
    settings.update(changes)
    return RunCache(tmp_path / "runs", **settings)


def _notebook(*sources: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])


def test_the_key_follows_what_the_kernel_runs_not_cell_ids(tmp_path):
    (tmp_path / "helper.py").write_text("X = 1\n")
    files = [tmp_path / "helper.py"]
    cache = _cache(tmp_path)
    key = cache.key("s1", _notebook("a = 1", "b = 2"), files, tmp_path)
    assert cache.key("s1", _notebook("a = 1", "b = 2"), files, tmp_path) == key   # fresh random cell ids, same key
    assert cache.key("s1", _notebook("a = 1", "b = 3"), files, tmp_path) != key
    assert cache.key("s1", _notebook("b = 2", "a = 1"), files, tmp_path) != key
    (tmp_path / "helper.py").write_text("X = 2\n")
    assert cache.key("s1", _notebook("a = 1", "b = 2"), files, tmp_path) != key


def test_a_run_serves_only_the_entry_it_came_from(tmp_path):
    """Two students' identical folders (the same relative file names) are each run: a first grade
    is never another student's run called a regrade."""
    for student in ("alice", "bob"):
        (tmp_path / student).mkdir()
        (tmp_path / student / "helper.py").write_text("X = 1\n")
    cache = _cache(tmp_path)
    keys = [cache.key(s, _notebook("a = 1"), [tmp_path / s / "helper.py"], tmp_path / s) for s in ("alice", "bob")]
    assert keys[0] != keys[1]
    assert cache.key("alice", _notebook("a = 1"), [tmp_path / "alice" / "helper.py"], tmp_path / "alice") == keys[0]


@pytest.mark.parametrize("change", [
    {"inputs": ["other data", "probes-digest", "weights"]},
    {"inputs": ["data-digest", "probes-digest", "real weights"]},
    {"limits": Limits(memory_bytes=2 * GiB)},
    {"isolation": "uid"},
    {"harvest_source": "def harvest(ns, ex, probes):\n    ex.value('x', lambda: 1)\n    ex.write()\n"},
])
def test_the_key_follows_data_weights_limits_isolation_and_harvest(tmp_path, change):
    notebook = _notebook("a = 1")
    assert _cache(tmp_path, **change).key("s1", notebook, [], tmp_path) != _cache(tmp_path).key("s1", notebook, [], tmp_path)


def test_a_kept_run_comes_back_with_its_artefacts_and_says_when_it_ran(tmp_path):
    cache = _cache(tmp_path)
    artefacts = tmp_path / "artefacts"
    artefacts.mkdir()
    (artefacts / "manifest.json").write_text('{"entries": {}}')
    record = RunRecord(cells=[CellRecord(0, "ok", "a = 1", seconds=0.1)], harvest_status="ok", seconds=3.0)
    key = cache.key("s1", _notebook("a = 1"), [], tmp_path)
    assert cache.load(key, tmp_path / "nothing") is None
    cache.keep(key, record, _notebook("a = 1"), artefacts)
    kept, executed = cache.load(key, tmp_path / "back")
    assert kept.reused_from and kept.cells == record.cells and kept.harvest_status == "ok"
    assert executed.cells[0].source == "a = 1"
    assert (tmp_path / "back" / "manifest.json").read_text() == '{"entries": {}}'


@pytest.mark.parametrize("outcome", ["timeout", "not started"])
def test_runs_the_machine_may_have_cut_short_are_not_kept(tmp_path, outcome):
    cache = _cache(tmp_path)
    (tmp_path / "artefacts").mkdir()
    key = cache.key("s1", _notebook("a = 1"), [], tmp_path)
    cache.keep(key, RunRecord(outcome=outcome), _notebook("a = 1"), tmp_path / "artefacts")
    assert cache.load(key, tmp_path / "back") is None


def _batch(folder: Path, out: Path, *extra: str) -> pd.DataFrame:
    done = subprocess.run([sys.executable, "grade.py", "batch", str(folder), "--assignment", "fruits", "--out", str(out),
                           "--workers", "1", "--quiet", *extra], cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return pd.read_csv(out / "grades.csv", dtype={"id": str}).set_index("id")


def _run(out: Path, sid: str) -> dict:
    return json.loads((out / sid / "run.json").read_text())


@pytest.mark.slow
def test_a_kept_run_whose_second_harvest_step_skipped_a_value_now_needed_runs_again(tmp_path):
    """The graders asked for no upstream when the run was kept; after a grader or reference change
    they would: the kept run cannot answer, so the entry runs again (pipeline._kept_run_answers)."""
    from autograder.artefacts import ON_REQUEST, Artefacts
    cache = _cache(tmp_path)
    key = cache.key("alice", _notebook("a = 1"), [], tmp_path)
    artefacts = tmp_path / "artefacts"
    artefacts.mkdir()
    (artefacts / "manifest.json").write_text(json.dumps({"format": 1, "entries": {
        "x": {"status": "ok", "value": 1}, "upstream:x": {"status": ON_REQUEST, "message": "not asked"}}}))
    cache.keep(key, RunRecord(harvest_status="ok"), _notebook("a = 1"), artefacts)
    seen = []

    def needs_upstream(folder: Path) -> bool:
        seen.append(Artefacts(folder).get("x"))
        return Artefacts(folder).status("upstream:x") != ON_REQUEST
    assert cache.load(key, tmp_path / "regrade", answers=needs_upstream) is None
    assert seen == [1] and not (tmp_path / "regrade").exists()
    kept = cache.load(key, tmp_path / "regrade", answers=lambda folder: True)
    assert kept is not None and Artefacts(tmp_path / "regrade").get("x") == 1


def test_a_regrade_reuses_unchanged_runs_and_runs_changed_entries_again(tmp_path):
    """Entries made unique to this test (a comment with a fresh id), so no earlier run is kept."""
    folder = tmp_path / "entries"
    folder.mkdir()
    token = uuid.uuid4().hex
    for name in ("alice_correct", "bob_buggy"):
        notebook = nbformat.read(str(REPO / "submissions" / "fruits" / f"{name}.ipynb"), as_version=4)
        notebook.cells.insert(0, nbformat.v4.new_code_cell(f"# {token}"))
        nbformat.write(notebook, str(folder / f"{name}.ipynb"))
    shutil.copy(REPO / "submissions" / "fruits" / "carol_module.py", folder / f"carol_{token[:8]}.py")
    ids = sorted(p.stem for p in folder.iterdir())

    first = _batch(folder, tmp_path / "first")
    assert [_run(tmp_path / "first", sid)["reused_from"] for sid in ids] == ["", "", ""]
    # One worker, three entries: the later two took spare kernels started while the one before ran.
    assert sum(_run(tmp_path / "first", sid)["warm_kernel"] for sid in ids) == 2   # a module too

    second = _batch(folder, tmp_path / "second")
    tasks = [f"F{i}" for i in range(1, 9)]
    pd.testing.assert_frame_equal(second[["total", *tasks, "status"]], first[["total", *tasks, "status"]])
    assert first.loc["alice_correct", "total"] == first.loc["alice_correct", "max"] > first.loc["bob_buggy", "total"]
    for sid in ids:
        assert _run(tmp_path / "second", sid)["reused_from"]
        assert 'id="reused"' in (tmp_path / "second" / sid / "report.html").read_text()
        assert (tmp_path / "second" / sid / "executed.ipynb").is_file()

    notebook = nbformat.read(str(folder / "bob_buggy.ipynb"), as_version=4)
    notebook.cells[0].source += "\n# edited"
    nbformat.write(notebook, str(folder / "bob_buggy.ipynb"))
    _batch(folder, tmp_path / "third")
    assert _run(tmp_path / "third", "bob_buggy")["reused_from"] == ""
    assert _run(tmp_path / "third", "alice_correct")["reused_from"]

    _batch(folder, tmp_path / "fourth", "--rerun")
    assert [_run(tmp_path / "fourth", sid)["reused_from"] for sid in ids] == ["", "", ""]
    assert 'id="reused"' not in (tmp_path / "fourth" / "alice_correct" / "report.html").read_text()


def _kept_run(root: Path, assignment: str, key: str, size: int, used: float) -> Path:
    folder = root / assignment / key
    (folder / "artefacts").mkdir(parents=True)
    (folder / "artefacts" / "values.npy").write_bytes(b"x" * size)
    os.utime(folder, (used, used))
    return folder


def test_pruning_removes_the_runs_used_longest_ago_of_every_assignment_until_within_the_bound(tmp_path):
    runs = tmp_path / "runs"
    old = _kept_run(runs, "fruits", "a" * 32, 4000, used=1_000)
    middle = _kept_run(runs, "scene15", "b" * 32, 4000, used=2_000)
    new = _kept_run(runs, "fruits", "c" * 32, 4000, used=3_000)
    building = _kept_run(runs, "fruits", ".dddd-x1", 4000, used=500)   # build_atomically's scratch
    assert runcache.prune(runs, max_bytes=12_000) == (0, 0)
    assert runcache.prune(runs, max_bytes=5_000) == (2, 8000)
    assert not old.exists() and not middle.exists() and new.exists() and building.exists()


def test_a_reused_run_counts_as_used_now(tmp_path):
    cache = _cache(tmp_path / "cache")   # its runs in cache/runs/<"assignment">/, as a batch keeps them
    artefacts = tmp_path / "artefacts"
    artefacts.mkdir()
    (artefacts / "manifest.json").write_text('{"entries": {}}')
    keys = [cache.key(s, _notebook("a = 1"), [], tmp_path) for s in ("s1", "s2")]
    for key in keys:
        cache.keep(key, RunRecord(harvest_status="ok"), _notebook("a = 1"), artefacts)
        os.utime(cache.root / key, (1_000, 1_000))
    assert cache.load(keys[0], tmp_path / "back") is not None   # s1 reused: s2 is now the older
    size = sum(f.stat().st_size for f in (cache.root / keys[1]).rglob("*") if f.is_file())
    assert runcache.prune(tmp_path / "cache", max_bytes=size + 1)[0] == 1
    assert (cache.root / keys[0]).exists() and not (cache.root / keys[1]).exists()
    assert cache.load(keys[1], tmp_path / "gone") is None and not (tmp_path / "gone").exists()


def test_a_batch_prunes_the_kept_runs_to_its_bound(tmp_path, monkeypatch):
    import autograder.batch as batch
    calls = []
    monkeypatch.setattr(batch, "prune", lambda root, most: calls.append((root, most)) or (0, 0))
    (tmp_path / "empty").mkdir()
    job = batch.BatchJob("fruits", tmp_path / "out", REPO / ".cache", REPO / "data", kept_runs_bytes=123)
    batch.run_batch(job, tmp_path / "empty", workers=1, progress=False)
    assert calls == [(REPO / ".cache" / "runs", 123)]
    batch.run_batch(dataclasses.replace(job, reuse_runs=False), tmp_path / "empty", workers=1, progress=False)
    assert len(calls) == 1   # --rerun keeps nothing, so it prunes nothing
