"""Grade a batch on a Dask distributed cluster: `grade.py batch ... --scheduler tcp://HOST:8786`.

Each entry is one task. This process (the client) reads the entry and sends its bytes with the task;
a worker writes them to a scratch folder, grades them with a SubmissionGrader made once per worker
process and batch (the reference is read once per worker, as in the local pool), and sends back the
gradebook row (a dict) and the bytes of the entry's output folder (results.json, report.html,
executed.ipynb, run.json, artefacts/), which this process writes under --out. So no folder is shared:
a worker needs the harness (this repository and its venv) and the weight store at the --cache path;
it makes fixture data, probes and reference values there on first use, as `grade.py setup` does.
The gradebook, index.html, to_mark.csv and integrity.html are written here, as for a local batch.

A worker whose graders, grading code, torch or weight store differ from this machine's would give
other grades: such a worker is refused with a message saying what differs.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import sys
import tempfile
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .assignments import REPO
from .intake import submission_id

if TYPE_CHECKING:
    from .batch import BatchJob

CONNECT_TIMEOUT_S = 10      # an unreachable scheduler is reported after this long
WORKER_WAIT_S = 300         # a scheduler with no worker: wait this long for one (a Slurm job may queue)


class ClusterError(Exception):
    """The cluster cannot grade this batch; the message is one line for the TA."""


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker needs to build its grader; hashable: the key of the worker's cached grader."""
    job: BatchJob                   # its marks path dropped: the marks travel as data
    marks: tuple                    # ((id, task), (points, comment)) pairs read by the client
    fingerprint: tuple              # (what, digest) pairs a worker must match: same harness, same grades
    kernels_per_host: tuple         # (host, worker threads there): the cores are shared among them


@dataclass(frozen=True)
class PackedEntry:
    """An entry of the submissions folder as bytes: a file, a folder's regular files, or neither."""
    name: str
    kind: str                       # "file", "folder", "link" or "special" (a fifo, a socket...)
    files: tuple = ()               # (relative path, bytes); a file's own path is ""


# -- the entry, there and back -------------------------------------------------------------------
def pack_entry(entry: Path) -> PackedEntry:
    """Read an entry so a worker can rebuild what intake would see here (links inside a folder are
    skipped, as intake skips them; a link or a special file as the entry itself is refused there)."""
    entry = Path(entry)
    if entry.is_symlink():
        return PackedEntry(entry.name, "link")
    if entry.is_file():
        return PackedEntry(entry.name, "file", (("", entry.read_bytes()),))
    if entry.is_dir():
        files = tuple((str(p.relative_to(entry)), p.read_bytes()) for p in sorted(entry.rglob("*"))
                      if p.is_file() and not p.is_symlink() and not any(q.is_symlink() for q in p.parents))
        return PackedEntry(entry.name, "folder", files)
    return PackedEntry(entry.name, "special")


def unpack_entry(packed: PackedEntry, folder: Path) -> Path:
    """Write a packed entry into `folder`; returns the entry's path there."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / packed.name
    if packed.kind == "link":
        target.symlink_to(folder / ".missing-link-target")
    elif packed.kind == "special":
        os.mkfifo(target)
    elif packed.kind == "file":
        target.write_bytes(packed.files[0][1])
    else:
        target.mkdir()
        for relative, data in packed.files:
            path = (target / relative).resolve()
            if not path.is_relative_to(target.resolve()):   # only names rglob gave; checked all the same
                raise ValueError(f"{relative!r} leaves the entry's folder")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    return target


def read_tree(folder: Path) -> tuple:
    """Every regular file under `folder` as (relative path, bytes)."""
    return tuple((str(p.relative_to(folder)), p.read_bytes()) for p in sorted(folder.rglob("*"))
                 if p.is_file() and not p.is_symlink())


def write_tree(folder: Path, files: tuple) -> None:
    """Replace `folder` with these files (an entry's outputs, as grader.grade replaces them locally)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    root = folder.resolve()
    for relative, data in files:
        path = (folder / relative).resolve()
        if not path.is_relative_to(root):   # the worker is trusted, but a bad path must not escape --out
            raise ValueError(f"a worker sent {relative!r}, outside {folder}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


# -- what must match between client and workers ---------------------------------------------------
GRADING_CODE = ("grading.py", "checks.py", "verdicts.py", "manual.py", "artefacts/decode.py",
                "artefacts/encode.py")   # the harness's own files that turn values into points


def grading_fingerprint(job: BatchJob) -> tuple:
    """Digests of what decides a grade besides the data: the assignment's graders, harvest and
    reference, the harness's grading code, torch's version and the weight store (the data may be
    generated on each host)."""
    from importlib.metadata import version
    assignment = job.load()
    return (("graders and grading code", _code_digest(assignment)),
            ("torch", f"{version('torch')} / torchvision {version('torchvision')}"),
            ("weight store", job.workspace().store.fingerprint(list(assignment.models))))


_code_digests: dict[str, str] = {}


def _code_digest(assignment) -> str:
    """Taken once per process: a long-running worker whose files were edited since still runs the code
    it loaded, so it must not claim the new files' digest (restart the workers after an update)."""
    if assignment.name not in _code_digests:
        sources = [*(REPO / "autograder" / name for name in GRADING_CODE), *(REPO / "graders").glob("*.*"),
                   *assignment.folder.rglob("*"), REPO / "reference" / f"{assignment.name}.py"]
        code = hashlib.sha256()
        for path in sorted(set(sources)):
            if path.is_file() and not {"__pycache__", ".pytest_cache"} & set(path.parts):
                code.update(f"{path.relative_to(REPO)}\n".encode() + path.read_bytes())
        _code_digests[assignment.name] = code.hexdigest()[:16]
    return _code_digests[assignment.name]


def _differences(expected: tuple, found: tuple) -> str:
    wanted, have = dict(expected), dict(found)
    if wanted.keys() != have.keys():
        return "it runs another version of the harness (restart the workers after an update)"
    return "; ".join(f"{what} {have.get(what)} here, {wanted[what]} on the client"
                     for what in wanted if wanted[what] != have.get(what))


def harness_importable() -> bool:
    """Run on the scheduler: unpickling this function imports autograder there, or fails."""
    return True


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__


def worker_fingerprint(job: BatchJob) -> tuple:
    """Run on every worker by `client.run` before the batch (it also proves the harness imports there)."""
    return grading_fingerprint(job)


# -- on a worker ----------------------------------------------------------------------------------
_graders: dict = {}
_graders_lock = threading.Lock()


def _grader_for(spec: WorkerSpec):
    """This worker's grader for this batch, made by its first task; the next batch replaces it."""
    with _graders_lock:
        grader = _graders.get(spec)
        if grader is None:
            problem = _differences(spec.fingerprint, grading_fingerprint(spec.job))
            if problem:
                raise RuntimeError(f"this worker would grade differently from the client: {problem}")
            from .pipeline import SubmissionGrader
            overrides = {**dict(spec.job.limit_overrides), "threads": _kernel_threads(spec)}
            assignment = dataclasses.replace(spec.job, limit_overrides=tuple(overrides.items())).load()
            _graders.clear()
            grader = _graders[spec] = SubmissionGrader(assignment, spec.job.workspace(),
                                                       isolation=spec.job.isolation, marks=dict(spec.marks),
                                                       reuse_runs=spec.job.reuse_runs)
        return grader


def _kernel_threads(spec: WorkerSpec) -> int:
    """torch threads per kernel: this host's cores shared by the kernels its workers run at once."""
    from distributed import get_worker
    from distributed.comm import get_address_host
    from dask.system import CPU_COUNT   # respects cgroup CPU limits (Kubernetes, Slurm)
    worker = get_worker()
    kernels = dict(spec.kernels_per_host).get(get_address_host(worker.address), worker.state.nthreads)
    return max(1, CPU_COUNT // max(1, kernels))


def grade_on_worker(spec: WorkerSpec, packed: PackedEntry, lateness, student) -> tuple[dict, tuple]:
    """One task: grade one entry on this worker; returns its gradebook row and its output files."""
    grader = _grader_for(spec)
    with tempfile.TemporaryDirectory(prefix="autograder-task-", ignore_cleanup_errors=True) as scratch:
        entry = unpack_entry(packed, Path(scratch) / "entry")
        out = Path(scratch) / "out"
        row = grader.grade(entry, out, lateness=lateness, student=student)
        return row, read_tree(out / row["id"])


# -- on the client --------------------------------------------------------------------------------
class Cluster:
    """A connected client and the spec its workers grade with."""

    def __init__(self, client, scheduler: str, spec: WorkerSpec):
        self.client, self.scheduler, self.spec = client, scheduler, spec

    def describe(self) -> str:
        threads = self.client.nthreads()
        return f"Dask scheduler {self.scheduler}: {len(threads)} workers, {sum(threads.values())} threads"

    def grade(self, job: BatchJob, assignment, entries: list[Path], lateness: dict, students: dict,
              bar) -> dict[str, dict]:
        """Grade every entry on the cluster; returns the gradebook rows by id. Entries are sent a few
        per worker thread at a time, so the client never holds every submission's bytes at once."""
        from distributed import as_completed

        from .batch import _harness_error_row
        rows: dict[str, dict] = {}
        queue = list(entries)
        running = as_completed(loop=self.client.loop)
        entry_of: dict[str, Path] = {}   # task key -> entry
        batch_key = uuid.uuid4().hex[:8]

        def finish(entry: Path, error) -> None:
            rows[submission_id(entry)] = _harness_error_row(assignment, job, entry, error, lateness, students)
            bar.update(1)

        def submit_more() -> None:
            window = max(4, 2 * sum(self.client.nthreads().values()))
            while queue and running.count() < window:
                entry = queue.pop(0)
                sid = submission_id(entry)
                try:
                    packed = pack_entry(entry)
                except OSError as error:   # unreadable here: no worker could do better
                    finish(entry, f"the entry could not be read: {error}")
                    continue
                future = self.client.submit(grade_on_worker, self.spec, packed, lateness[sid], students[sid],
                                            key=f"grade-{batch_key}-{sid}", pure=False, retries=0)
                entry_of[future.key] = entry
                running.add(future)

        try:
            submit_more()
            for future in running:
                entry = entry_of.pop(future.key)
                try:
                    row, files = future.result()
                    write_tree(job.out / submission_id(entry), files)
                    rows[submission_id(entry)] = row
                    bar.update(1)
                except Exception as error:   # noqa: BLE001 - a harness bug, a dead worker, a lost scheduler
                    finish(entry, _why(error))
                future.release()   # its bytes are no longer needed on the cluster
                submit_more()
            if job.reuse_runs:
                self._prune_kept_runs(job)
        finally:
            self.client.close()
        return rows

    def _prune_kept_runs(self, job: BatchJob) -> None:
        """The workers keep runs in their own --cache: each prunes its own to the batch's bound."""
        from .runcache import prune
        try:
            self.client.run(prune, job.cache / "runs", job.kept_runs_bytes)
        except Exception as error:  # noqa: BLE001 - a full cache only costs disk, never the batch
            print(f"kept runs on the workers not pruned: {_first_line(error)}", file=sys.stderr)


def _why(error: BaseException) -> str:
    from distributed import KilledWorker
    if isinstance(error, KilledWorker):   # the scheduler retried it on other workers; each died
        return "the grading worker died"
    return _first_line(error)


def _check_address(scheduler: str) -> None:
    """Raises ValueError for an address that names no port or an impossible one."""
    from distributed.comm.addressing import parse_address, parse_host_port
    scheme, location = parse_address(scheduler, strict=False)
    if scheme in ("tcp", "tls", "ws", "wss"):
        _host, port = parse_host_port(location)
        if not 0 < int(port) < 65536:
            raise ValueError(f"port {port} is not a port number")


def connect(scheduler: str, job: BatchJob) -> Cluster:
    """Connect to the scheduler, wait for a worker, check the workers grade as this machine would.
    Raises ClusterError with one line for the TA."""
    try:
        from distributed import Client
    except ImportError:
        raise ClusterError("--scheduler needs Dask: .venv/bin/pip install 'dask[distributed]'") from None
    from .manual import read_marks
    try:
        marks = tuple(sorted(read_marks(job.marks).items()))
    except ValueError as error:
        raise ClusterError(str(error)) from None
    try:
        _check_address(scheduler)   # before Client(): a half-made one hangs 20 s at exit
    except (ValueError, TypeError) as error:
        raise ClusterError(f"--scheduler {scheduler!r} is not an address like tcp://HOST:8786 ({error})") from None
    try:
        client = Client(scheduler, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    except (OSError, ValueError, TypeError) as error:   # refused, timed out, not an address
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ClusterError(f"cannot reach the Dask scheduler at {scheduler}: {reason}") from None
    try:
        try:
            client.wait_for_workers(1, timeout=WORKER_WAIT_S)
        except TimeoutError:
            raise ClusterError(f"no Dask worker joined {scheduler} within {WORKER_WAIT_S} s; start one with "
                               f"`dask worker {scheduler}` from the repository (see the README)") from None
        try:   # the scheduler unpickles every task (the spec names the harness's classes): it needs the harness too
            client.run_on_scheduler(harness_importable)
        except Exception as error:   # noqa: BLE001 - whatever the scheduler sends back
            raise ClusterError(f"the scheduler at {scheduler} cannot import the harness ({_first_line(error)}); "
                               "start `dask scheduler` from the repository with its venv and "
                               "PYTHONPATH=<repository>") from None
        expected = grading_fingerprint(job)
        answers = client.run(worker_fingerprint, job, on_error="return")
        for address, found in sorted(answers.items()):
            if isinstance(found, BaseException):
                raise ClusterError(f"worker {address} cannot run the harness ({_first_line(found)}); "
                                   "start workers from the repository with its venv and PYTHONPATH=<repository>")
            problem = _differences(expected, tuple(found))
            if problem:
                raise ClusterError(f"worker {address} would grade differently: {problem}")
        from distributed.comm import get_address_host
        kernels: dict[str, int] = {}
        for address, threads in client.nthreads().items():
            host = get_address_host(address)
            kernels[host] = kernels.get(host, 0) + threads
        spec = WorkerSpec(dataclasses.replace(job, marks=None), marks, expected, tuple(sorted(kernels.items())))
        return Cluster(client, scheduler, spec)
    except BaseException:
        client.close()
        raise

