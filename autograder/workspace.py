"""Where the harness keeps what it generates, and the cached reference values.

    .cache/torch/               the weight store ($TORCH_HOME of the reference and every sandbox)
    .cache/probes/<a>/          grader-made hidden inputs
    .cache/reference/<a>/<key>/ the reference's values, computed once per (data, weights, probes, code)
    .cache/runs/<a>/<key>/      submissions' runs kept for regrades (runcache.py)
    data/<a>/                   fixture data in the assignment's real layout (or --data: the real set)
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .artefacts import Artefacts
from .assignments import REPO, Assignment
from .weights import WeightStore


@dataclass
class Workspace:
    cache: Path = REPO / ".cache"
    data_root: Path = REPO / "data"
    sandbox_base: Path = Path(tempfile.gettempdir()) / "autograder-sandboxes"

    def __post_init__(self):
        self.cache, self.data_root = Path(self.cache).resolve(), Path(self.data_root).resolve()
        # The reference and every sandbox load torchvision weights from the store, offline.
        os.environ["TORCH_HOME"] = str(self.store.root)

    @property
    def store(self) -> WeightStore:
        return WeightStore(self.cache / "torch")

    def data_dir(self, assignment: Assignment) -> Path:
        return self.data_root / assignment.data_name

    def probes_dir(self, assignment: Assignment) -> Path:
        """Keyed by the code that makes the probes: a change of it makes new ones."""
        digest = hashlib.sha256()
        for source in (assignment.folder / "fixture_data.py", assignment.folder / "expected.py"):
            digest.update(source.read_bytes() if source.exists() else b"-")
        return self.cache / "probes" / f"{assignment.name}-{digest.hexdigest()[:12]}"

    def hide_from_kernels(self) -> None:
        """Shut the reference, the graders (they make the hidden inputs), the cached answers, hidden
        inputs and other students' kept runs to every user but the grader's own: where kernels run as
        a private uid on the real file tree (no bubblewrap), these are world-readable otherwise. The
        weight store and the data stay readable: the kernels load them."""
        for folder in (REPO / "reference", REPO / "graders"):
            if folder.is_dir():
                os.chmod(folder, 0o700)
        for folder in (self.cache / "reference", self.cache / "probes", self.cache / "runs"):
            folder.mkdir(parents=True, exist_ok=True)   # made private before anything is kept there
            os.chmod(folder, 0o700)

    # -- set-up -------------------------------------------------------------------------------
    def prepare(self, assignment: Assignment, *, build_data: bool = True) -> Path:
        """Weights, data, probes and reference values, each made only if missing; returns the
        folder of reference values."""
        with self._lock("weights"):  # checkpoints are shared between assignments
            self.store.ensure(list(assignment.models))
        with self._lock(f"prepare-{assignment.name}"):
            data = self.data_dir(assignment)
            if not data.exists():
                if not build_data:
                    raise FileNotFoundError(f"no data for {assignment.name} at {data}")
                build_atomically(data, assignment.module("fixture_data").build)
            probes = self.probes_dir(assignment)
            if not probes.exists():
                def build_probes(folder: Path) -> None:
                    assignment.module("fixture_data").build_probes(folder)
                    assignment.module("expected").build_probe_inputs(folder)
                build_atomically(probes, build_probes)
            return self._reference(assignment)

    def run_inputs(self, assignment: Assignment) -> list[str]:
        """What the grader puts into every sandbox of this assignment (runcache.py's key): the data,
        the hidden probes and the weights."""
        return [_tree_digest(self.data_dir(assignment)), _tree_digest(self.probes_dir(assignment)),
                self.store.fingerprint(list(assignment.models))]

    def runs_dir(self, assignment: Assignment) -> Path:
        return self.cache / "runs" / assignment.name

    def reference_key(self, assignment: Assignment) -> str:
        digest = hashlib.sha256()
        for part in self.run_inputs(assignment):   # data, probes, weights: the same bytes as before
            digest.update(part.encode())
        for source in assignment.source_files():
            digest.update(source.read_bytes() if source.exists() else b"-")
        from importlib.metadata import version  # not `import torch`: workers stay light
        digest.update(f"{version('torch')}|{version('torchvision')}".encode())
        return digest.hexdigest()[:20]

    def reference(self, assignment: Assignment) -> Artefacts:
        return Artefacts(self.prepare(assignment))

    def _reference(self, assignment: Assignment) -> Path:
        target = self.cache / "reference" / assignment.name / self.reference_key(assignment)
        if (target / "manifest.json").exists():
            return target

        def compute(folder: Path) -> None:
            from .artefacts.encode import Exporter
            exporter = Exporter(str(folder))
            assignment.module("expected").compute(exporter, self.data_dir(assignment), self.probes_dir(assignment))
            broken = {k: v["message"] for k, v in exporter.entries.items() if v["status"] != "ok"}
            if broken:
                raise RuntimeError(f"the reference of {assignment.name} failed: {json.dumps(broken)[:2000]}")
        build_atomically(target, compute)
        return target

    @contextmanager
    def _lock(self, name: str):
        self.cache.mkdir(parents=True, exist_ok=True)
        with open(self.cache / f".{name}.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def build_atomically(target: Path, build) -> None:
    """build(tmp) then rename: a crash leaves no half-made folder that looks finished."""
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        build(scratch)
        for path in [scratch, *scratch.rglob("*")]:
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        scratch.rename(target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _tree_digest(folder: Path) -> str:
    """Names and sizes+mtimes of every file: cheap, and changes when the data set is swapped."""
    digest = hashlib.sha256()
    if folder.exists():
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                stat = path.stat()
                digest.update(f"{path.relative_to(folder)}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()
