"""Runs kept for regrades: a submission's run is reused when nothing that decides its result changed.

A regrade after a grader fix should cost the graders' time, not the students' notebooks' time. The
sandbox run of a submission depends only on what goes into it: the notebook and files, the data,
the weights, the hidden probes, the harvest, the limits, the isolation level, the run-side code of
the harness (execution, sandbox, encoder) and the torch/torchvision versions. Its key hashes all of
these; the graders, expected.py and the report are deliberately left out, so changing them reuses
the run and grades its artefacts again. One exception: the harvest's second step computed only the
values the graders asked for then (execution.py); if the graders now ask for one it skipped, the
entry runs again.

    <cache>/runs/<assignment>/<key>/{run.json, executed.ipynb, artefacts/}

What is kept is what a fresh run leaves in the out folder: safe-format artefacts (read back with
allow_pickle=False like a fresh run's), the run record and the executed notebook; nothing the
student's code can reach. Runs that ended by the clock or never started are not kept: a busy machine
may have caused them. `grade.py batch --rerun` runs every entry again; deleting the folder drops all.
A fruits run keeps ~2.5 MB, so a course's worth would grow without end: after each batch, `prune`
removes the least recently used runs (kept or reused longest ago) of every assignment until they
hold at most `--kept-runs-gib` (DEFAULT_KEPT_BYTES).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import nbformat

from .execution import RunRecord
from .sandbox import Limits
from .workspace import build_atomically

REUSABLE_OUTCOMES = ("finished", "died", "memory")
DEFAULT_KEPT_BYTES = 4 * 2**30   # every assignment's kept runs together: ~1600 fruits runs
_PACKAGE = Path(__file__).resolve().parent
# The harness's code on the submission's side of the grade: a change to any of it runs everything again.
RUN_SIDE_SOURCES = [_PACKAGE / "execution.py", _PACKAGE / "intake.py", *sorted((_PACKAGE / "sandbox").glob("*.py")),
                    *sorted((_PACKAGE / "artefacts").glob("encode*.py"))]


class RunCache:
    """Reusable runs of one assignment under one set of inputs (data, weights, probes, limits, code)."""

    def __init__(self, root: Path, *, inputs: list[str], limits: Limits, isolation: str, harvest_source: str):
        digest = hashlib.sha256()
        for part in [*inputs, json.dumps(limits.to_dict(), sort_keys=True), isolation, harvest_source]:
            digest.update(part.encode() + b"\0")
        for source in RUN_SIDE_SOURCES:
            digest.update(source.read_bytes() + b"\0")
        from importlib.metadata import version
        digest.update(f"{version('torch')}|{version('torchvision')}".encode())
        self.root = Path(root)
        self._inputs_digest = digest.hexdigest()

    def key(self, submission_id: str, notebook: nbformat.NotebookNode, files: list[Path], base: Path) -> str:
        """The submission's part of the key: its id, its notebook (as run) and every file beside it.
        The id keeps a run to the entry it came from: two students' identical folders are each run
        (and their reports never call a first grade a regrade)."""
        digest = hashlib.sha256(self._inputs_digest.encode())
        digest.update(f"{submission_id}\0".encode())
        # What the kernel runs: the cells' kinds and sources, and how the notebook was made (a module
        # cut into cells runs with other settings). Not cell ids: intake makes fresh ones for a module.
        cells = [(cell.get("cell_type"), cell.get("source")) for cell in notebook.get("cells", [])]
        made = notebook.get("metadata", {}).get("autograder", {})
        digest.update(json.dumps([cells, made], sort_keys=True, default=str).encode())
        for path in sorted(files, key=lambda p: str(p.relative_to(base))):
            digest.update(f"\0{path.relative_to(base)}\0".encode())
            digest.update(path.read_bytes())
        return digest.hexdigest()[:32]

    def load(self, key: str, artefacts_to: Path, *, answers: Callable[[Path], bool] = lambda _artefacts: True
             ) -> tuple[RunRecord, nbformat.NotebookNode] | None:
        """The kept run, its artefacts copied to `artefacts_to`; None when there is none, or when
        `answers(its artefacts folder)` says the graders now need a value it did not compute."""
        folder = self.root / key
        copied = not artefacts_to.exists()
        try:
            if not answers(folder / "artefacts"):
                return None
            record = RunRecord.from_dict(json.loads((folder / "run.json").read_text()))
            executed = nbformat.read(str(folder / "executed.ipynb"), as_version=4)
            ran_at = json.loads((folder / "kept.json").read_text())["ran_at"]
            shutil.copytree(folder / "artefacts", artefacts_to, dirs_exist_ok=True)
            os.utime(folder)   # used now: the last to go when the kept runs are pruned
        except (OSError, ValueError, TypeError, KeyError):
            if copied:   # a run pruned while it was read leaves no half of its artefacts behind
                shutil.rmtree(artefacts_to, ignore_errors=True)
            return None   # none kept, or half-written, or from an older harness: run again
        record.reused_from = ran_at
        return record, executed

    def keep(self, key: str, record: RunRecord, executed: nbformat.NotebookNode, artefacts: Path) -> None:
        """Keep a run for later regrades (runs a busy machine may have cut short are not kept)."""
        if record.outcome not in REUSABLE_OUTCOMES or not artefacts.is_dir():
            return
        target = self.root / key
        if target.exists():
            return

        def write(folder: Path) -> None:
            (folder / "run.json").write_text(json.dumps(record.to_dict()))
            nbformat.write(executed, str(folder / "executed.ipynb"))
            shutil.copytree(artefacts, folder / "artefacts")
            (folder / "kept.json").write_text(json.dumps(
                {"ran_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}))
        try:
            build_atomically(target, write)
        except OSError:
            pass   # another worker kept the same run first, or the disk is full: only a regrade is slower


def prune(runs_root: Path, max_bytes: int = DEFAULT_KEPT_BYTES) -> tuple[int, int]:
    """Remove the least recently used kept runs under `runs_root` (<cache>/runs: every assignment's)
    until they hold at most `max_bytes`; returns (runs removed, bytes they held). A run's folder is
    touched when it is kept and when it is reused. Folders being built (dot names) are left alone."""
    runs = []
    for folder in Path(runs_root).glob("*/[!.]*/"):
        try:
            size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
            runs.append((folder.stat().st_mtime, size, folder))
        except OSError:
            continue   # removed by another grader meanwhile
    total = sum(size for _used, size, _folder in runs)
    removed = freed = 0
    for _used, size, folder in sorted(runs, key=lambda run: run[0]):
        if total <= max_bytes:
            break
        shutil.rmtree(folder, ignore_errors=True)
        total, removed, freed = total - size, removed + 1, freed + size
    return removed, freed
