"""`grade.py batch --scheduler`: a batch on a Dask cluster gives the grades a local batch gives.

The cluster is a `distributed.LocalCluster` with two worker processes, started here on loopback only.
The entries are the bundled fruits examples plus two from the corpus: a folder (entries travel to the
workers as bytes: cluster.pack_entry) and a notebook whose kernel dies (the replay in a fresh kernel
runs in a Dask worker's thread).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from autograder.cluster import pack_entry, unpack_entry
from autograder.intake import NotASubmission, prepare

REPO = Path(__file__).resolve().parent.parent
CORPUS_ENTRIES = ["correct_folder", "hostile_kernel_crash.ipynb"]
# Generous limits: a loaded machine must not turn a slow cell into a timeout in one run only.
LIMITS = ["--cell-timeout", "60", "--timeout", "400"]


def _grade(*args, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "grade.py", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def entries(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("entries")
    for entry in sorted((REPO / "submissions" / "fruits").iterdir()):
        shutil.copy(entry, folder / entry.name)
    for name in CORPUS_ENTRIES:
        source = REPO / "tests" / "corpus" / "fruits" / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, folder / name)
    return folder


@pytest.fixture(scope="module")
def scheduler():
    from distributed import LocalCluster
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                           dashboard_address="127.0.0.1:0")
    try:
        yield cluster.scheduler_address
    finally:
        cluster.close()


def _normalised(message: str) -> str:
    """The message without its timings (seconds differ from run to run)."""
    return re.sub(r"\d+(\.\d+)?\s*s\b", "<t> s", str(message))


@pytest.mark.slow
def test_a_batch_on_the_cluster_grades_as_a_local_batch(entries, scheduler, tmp_path):
    local, cluster = tmp_path / "local", tmp_path / "cluster"
    done = _grade("batch", str(entries), "--assignment", "fruits", "--out", str(local), "--workers", "2", "--rerun",
                  "--quiet", *LIMITS)
    assert done.returncode == 0, done.stderr[-3000:]
    done = _grade("batch", str(entries), "--assignment", "fruits", "--out", str(cluster), "--scheduler", scheduler, "--rerun",
                  *LIMITS)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 workers, 2 threads" in done.stderr      # the progress output names the cluster it used

    expected = pd.read_csv(local / "grades.csv", dtype={"id": str}).set_index("id")
    found = pd.read_csv(cluster / "grades.csv", dtype={"id": str}).set_index("id")
    assert sorted(found.index) == sorted(expected.index) == sorted(
        p.name.removesuffix(".ipynb").removesuffix(".py").removesuffix(".zip") for p in entries.iterdir())
    assert list(found.columns) == list(expected.columns)
    tasks = [c for c in expected.columns if re.fullmatch(r"F\d", c)]
    assert tasks == [f"F{i}" for i in range(1, 9)]
    pd.testing.assert_frame_equal(found[["total", *tasks, "status"]], expected[["total", *tasks, "status"]])
    assert found["message"].map(_normalised).to_dict() == expected["message"].map(_normalised).to_dict()
    # The set is not trivial: full marks, a partial grade, a folder, a kernel death and its replay.
    assert found.loc["alice_correct", "total"] == found.loc["alice_correct", "max"]
    assert 0 < found.loc["bob_buggy", "total"] < found.loc["bob_buggy", "max"]
    assert found.loc["correct_folder", "total"] == found.loc["correct_folder", "max"]
    assert "run again in a fresh kernel" in found.loc["hostile_kernel_crash", "message"]

    for sid in found.index:   # the workers' files came back: every entry's outputs, as a local batch writes them
        assert sorted(p.name for p in (cluster / sid).iterdir()) == sorted(p.name for p in (local / sid).iterdir())
        mine = json.loads((cluster / sid / "results.json").read_text())
        theirs = json.loads((local / sid / "results.json").read_text())
        assert [(t["name"], t["score"]) for t in mine["tests"]] == [(t["name"], t["score"]) for t in theirs["tests"]]
        html = (cluster / sid / "report.html").read_text()
        assert sid in html and _normalised(found.loc[sid, "message"]).split(".")[0] in _normalised(html)
    assert (cluster / "index.html").is_file()


def test_an_unreachable_scheduler_gets_one_line_not_a_traceback(entries, tmp_path):
    with socket.socket() as probe:   # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    done = _grade("batch", str(entries), "--assignment", "fruits", "--out", str(tmp_path / "out"),
                  "--scheduler", f"tcp://127.0.0.1:{port}", timeout=120)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(f"grade.py: cannot reach the Dask scheduler at tcp://127.0.0.1:{port}")
    assert not (tmp_path / "out" / "grades.csv").exists()

    done = _grade("batch", str(entries), "--assignment", "fruits", "--out", str(tmp_path / "out"),
                  "--scheduler", "127.0.0.1:no-port", timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "is not an address like tcp://HOST:8786" in done.stderr


def test_entries_travel_as_bytes_and_come_out_as_intake_sees_them(tmp_path):
    folder = REPO / "tests" / "corpus" / "fruits" / "correct_folder"
    packed = pack_entry(folder)
    rebuilt = unpack_entry(packed, tmp_path / "worker")
    assert rebuilt.name == folder.name
    originals = {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    copies = {str(p.relative_to(rebuilt)): p.read_bytes() for p in rebuilt.rglob("*") if p.is_file()}
    assert copies == originals and originals
    here, there = prepare(folder, tmp_path / "a"), prepare(rebuilt, tmp_path / "b")
    assert there.main.relative_to(there.base) == here.main.relative_to(here.base)

    zipped = REPO / "tests" / "corpus" / "fruits" / "correct_zipped.zip"
    assert unpack_entry(pack_entry(zipped), tmp_path / "zip").read_bytes() == zipped.read_bytes()

    link = tmp_path / "link.ipynb"   # a link as the entry itself is refused by intake, there as here
    link.symlink_to(REPO / "submissions" / "fruits" / "alice_correct.ipynb")
    rebuilt_link = unpack_entry(pack_entry(link), tmp_path / "links")
    for entry in (link, rebuilt_link):
        with pytest.raises(NotASubmission, match="symbolic link"):
            prepare(entry, tmp_path / "scratch")


@pytest.mark.slow
def test_the_workers_prune_the_runs_kept_in_their_own_cache(scheduler, tmp_path):
    from distributed import Client

    from autograder.batch import BatchJob
    from autograder.cluster import Cluster
    runs = tmp_path / "cache" / "runs" / "fruits"
    for key, used in (("old", 1_000), ("new", 2_000)):
        (runs / key).mkdir(parents=True)
        (runs / key / "run.json").write_bytes(b"x" * 1000)
        os.utime(runs / key, (used, used))
    job = BatchJob("fruits", tmp_path / "out", tmp_path / "cache", REPO / "data", kept_runs_bytes=1500)
    cluster = Cluster(Client(scheduler), scheduler, spec=None)
    try:
        cluster._prune_kept_runs(job)   # both workers share this machine's folder: one prune is enough
    finally:
        cluster.client.close()
    assert sorted(p.name for p in runs.iterdir()) == ["new"]
