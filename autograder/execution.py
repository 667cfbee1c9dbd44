"""Run one submission in its sandbox: execute every cell in a jailed Jupyter kernel, then harvest.

`SubmissionRunner.run()` is the whole of the student-code side of a grade:
    sandbox folder -> kernel (nbclient, cell by cell, errors allowed) -> harvest cells -> safe export
The harvest has two steps: the second computes only the costly values (the student's own upstream
re-run) that the graders ask for after comparing the first step's values with the reference.
The grader's process only talks to the kernel over ZeroMQ (ipc sockets in the sandbox's runtime
folder, so no network is needed) and reads back the exported files. Nothing it receives is unpickled.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty
from typing import Callable

import nbformat
from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.kernelspec import KernelSpec
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from jupyter_core.utils import ensure_async, run_sync
from nbclient.exceptions import CellControlSignal, DeadKernelError

from .artefacts import ENCODER_SOURCE, ON_REQUEST, Artefacts, copy_out
from .sandbox import ForkFailed, ForkServer, Limits, Sandbox, forks_kernels, kernel_environment, remove_left_behind
from .sandbox.forkserver import find_holder, holder_command

TIMEOUT_ENAME = "CellTimeoutError"
FORKED_DEFENCE = ("kernel forked from the worker's fork server (torch imported once, in a process that never ran "
                  "student code), then joined this sandbox's namespaces, cgroup, limits and uid")
HARVEST_TIMEOUT_S = 180


@dataclass
class CellRecord:
    index: int                     # position among the notebook's cells (0-based)
    status: str                    # ok | error | timeout | died | not run
    source_head: str = ""
    error: str = ""                # "ValueError: ..." (first lines, for the report)
    traceback_tail: str = ""
    seconds: float = 0.0
    has_image: bool = False


@dataclass
class RunRecord:
    """What happened when the submission ran: the report's account of its execution."""

    outcome: str = "finished"      # finished | timeout | memory | died | not started
    message: str = ""
    cells: list[CellRecord] = field(default_factory=list)
    harvest_status: str = "not run"
    harvest_error: str = ""
    defences: dict = field(default_factory=dict)
    seconds: float = 0.0
    peak_memory_mib: float | None = None   # the kernel's process tree, from its cgroup
    export_problems: list[str] = field(default_factory=list)
    harvest_seconds: float = 0.0
    kernel_start_seconds: float = 0.0       # waiting for the jailed kernel(s), replays included
    warm_kernel: bool = False               # the first kernel was a spare started ahead (imports done)
    reused_from: str = ""                   # set when a regrade reused this run (runcache.py): its time

    @property
    def image_outputs(self) -> int:
        return sum(c.has_image for c in self.cells)

    def to_dict(self) -> dict:
        from dataclasses import asdict
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "RunRecord":
        """Back from to_dict() (runcache.py); unknown keys are an error, so an old record is not used."""
        cells = [CellRecord(**cell) for cell in values.get("cells", [])]
        return cls(**{**values, "cells": cells})


class PromptKernelClient(AsyncKernelClient):
    """A kernel client that is ready when the kernel's answer to kernel_info has come on both
    channels: the reply on shell, and on iopub the idle status that ends that request (so iopub is
    subscribed, and what it had queued for the request is read). jupyter_client's own wait then
    reads iopub until it has been silent for 0.2 s, a fixed cost on every kernel start."""

    # Per message, as jupyter_client waits; a request whose idle status is lost (iopub not joined
    # yet) is sent again.
    SHELL_TIMEOUT_S, IOPUB_TIMEOUT_S = 1.0, 0.2

    async def wait_for_ready(self, timeout: float | None = None) -> None:   # AsyncKernelClient binds it by value
        deadline = time.monotonic() + (timeout if timeout is not None else float("inf"))
        while True:
            reply = await self._kernel_info_answered(self.kernel_info(), deadline)
            if reply is not None:
                self._handle_kernel_info_reply(reply)
                return
            if not await self._async_is_alive():
                raise RuntimeError("Kernel died before replying to kernel_info")
            if time.monotonic() > deadline:
                raise RuntimeError(f"Kernel didn't respond in {timeout:.0f} seconds")

    async def _kernel_info_answered(self, msg_id: str, deadline: float) -> dict | None:
        """The kernel_info reply to `msg_id` once iopub has carried that request's idle status; None
        when a message does not come in time. Other messages are dropped, as jupyter_client's flush
        drops them (nbclient reads only the replies to its own requests)."""
        reply, idle = None, False
        while reply is None or not idle:
            channel, most = (self.shell_channel, self.SHELL_TIMEOUT_S) if reply is None else \
                (self.iopub_channel, self.IOPUB_TIMEOUT_S)
            wait = min(most, deadline - time.monotonic())
            if wait <= 0:
                return None
            try:
                msg = await ensure_async(channel.get_msg(timeout=wait))
            except Empty:
                return None
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "kernel_info_reply":
                reply = msg
            elif msg["msg_type"] == "status" and msg["content"].get("execution_state") == "idle":
                idle = True
        return reply


class SandboxKernelManager(AsyncKernelManager):
    """A KernelManager whose kernel starts inside a Sandbox, talking over ipc sockets: exec'd there
    (launch.py -> bubblewrap -> setpriv -> ipykernel), or, when the sandbox has a fork server,
    forked into it with its imports done (sandbox/forkserver.py)."""

    def __init__(self, sandbox: Sandbox, *, warm_imports: tuple[str, ...] = (), **kwargs):
        runtime = sandbox.runtime
        super().__init__(transport="ipc", ip=str(runtime / "kernel"),
                         connection_file=str(runtime / "connection.json"),
                         client_class=f"{__name__}.PromptKernelClient", **kwargs)
        self.sandbox = sandbox
        self.forked = False    # started by the fork server (forkserver.py), not exec'd afresh
        # -P: no student file shadows the standard library while the kernel starts; the work folder
        # is then appended to sys.path, so a submission can still import its own helper modules.
        start_up = "import sys as _s, os as _o; _s.path.append(_o.getcwd()); del _s, _o"
        # A spare kernel imports the heavy libraries before it answers, binding no name: a
        # student who forgets `import torch` still gets a NameError.
        start_up += "".join(f"; __import__({module!r})" for module in warm_imports)
        options = ["--HistoryManager.enabled=False", "--IPKernelApp.capture_fd_output=False",
                   f"--IPKernelApp.exec_lines={start_up}"]
        self._kernel_arguments = ["-f", "{connection_file}", *options]
        argv = sandbox.wrap([sys.executable, "-P", "-m", "ipykernel_launcher", *self._kernel_arguments])
        self._kernel_spec = KernelSpec(argv=argv, display_name="sandboxed python", language="python",
                                       interrupt_mode="message", env={})

    async def _async_launch_kernel(self, kernel_cmd, **kw):
        # The kernel may run as the sandbox's private uid: let it read its connection file.
        if self.sandbox.runs_as_private_uid:
            os.chown(self.connection_file, self.sandbox.uid, self.sandbox.uid)
        kw["env"] = self.sandbox.environment()
        kw["cwd"] = str(self.sandbox.work)
        # The kernel's own stdout/stderr (start-up banners, C-level crash messages) go to a log
        # outside the student's folder, not to the grader's terminal.
        log = open(self.sandbox.kernel_log, "ab")
        kw["stdout"] = kw["stderr"] = log
        kw["stdin"] = subprocess.DEVNULL
        try:
            if self.sandbox.forks_kernels:
                try:
                    return await self._launch_forked(log, kw)
                except ForkFailed as error:
                    print(f"autograder: kernel not forked ({error}); starting it the plain way", file=sys.stderr)
                    self.sandbox.kill_all(self.process)
            await super()._async_launch_kernel(kernel_cmd, **kw)
        finally:
            log.close()  # the kernel holds its own copy of the descriptor

    async def _launch_forked(self, log, kw) -> None:
        """Start the sandbox around a holder (forkserver.py), then have the fork server fork the
        kernel into it: its imports were done once, in the zygote."""
        status_read, status_write = os.pipe()
        try:
            await super()._async_launch_kernel(self.sandbox.wrap(holder_command(status_read)),
                                               **kw, pass_fds=(status_read,))
            os.close(status_read)
            status_read = None
            holder = find_holder(self.process.pid, self.sandbox.uid)
            arguments = [a.format(connection_file=self.connection_file) for a in self._kernel_arguments]
            request = {**self.sandbox.launch_spec(), "uid": self.sandbox.uid, "env": kw["env"],
                       "cwd": kw["cwd"], "argv": arguments}
            self.sandbox.fork_server.fork_kernel(holder, request=request, log_fd=log.fileno(),
                                                 status_fd=status_write)
            self.forked = True
            if FORKED_DEFENCE not in self.sandbox.defences.active:
                self.sandbox.defences.have(FORKED_DEFENCE)
        finally:
            for fd in (status_read, status_write):
                if fd is not None:
                    os.close(fd)

    @property
    def process(self):
        return getattr(self.provisioner, "process", None)


class CappedNotebookClient(NotebookClient):
    """NotebookClient that keeps at most `max_output_bytes` of outputs (a flood stays in the kernel)."""

    def __init__(self, *args, max_output_bytes: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_output_bytes = max_output_bytes
        self.output_bytes = 0
        self.truncated = False
        self.timed_out = False      # set when the current cell hit its time limit

    async def _async_handle_timeout(self, timeout, cell=None):
        # The reply nbclient makes up for a timed-out cell never reaches the cell's outputs:
        # remember the timeout here so the cell is recorded as such.
        self.timed_out = True
        return await super()._async_handle_timeout(timeout, cell)

    def output(self, outs, msg, display_id, cell_index):
        self.output_bytes += len(json.dumps(msg.get("content", {}), default=str))
        if self.output_bytes > self.max_output_bytes:
            if not self.truncated:
                self.truncated = True
                outs.append(nbformat.v4.new_output(
                    "stream", name="stderr",
                    text=f"[autograder: output beyond {self.max_output_bytes // 1024} KiB was discarded]\n"))
            return None
        return super().output(outs, msg, display_id, cell_index)


class SubmissionRunner:
    """Executes notebooks in sandboxes and harvests their values for one assignment.

    With `warm=True` (a batch worker grading entry after entry) the runner keeps one spare: a
    fresh sandbox whose kernel has already imported torch and torchvision, started while the
    previous submission ran. The next submission gets it, its files are copied in, and its cells
    start at once. A spare serves exactly one submission and is then killed and removed like any
    sandbox, so isolation is unchanged: every submission still has its own folder, uid, cgroup,
    namespaces and kernel process; only the waiting is moved off the submission's path.
    Where bubblewrap and a private uid jail the kernels, a warm runner also keeps a fork server, so
    that neither the spares nor the first kernel import torch themselves (sandbox/forkserver.py).
    """

    def __init__(self, *, limits: Limits, weight_store: Path, sandbox_base: Path,
                 isolation: str = "auto", warm: bool = False, warm_imports: tuple[str, ...] = ()):
        self.limits = limits
        self.weight_store = weight_store
        self.sandbox_base = sandbox_base
        self.isolation = isolation
        self.warm = warm
        self.warm_imports = warm_imports   # assignment.toml: the template's heavy imports
        self._spare: Future | None = None   # of a _Spare (None if it failed): its kernel starts on _starter
        self._starter: ThreadPoolExecutor | None = None
        self._swept = False
        self._fork_server: ForkServer | None = None

    def run(self, notebook: nbformat.NotebookNode, *, name: str, files: list[Path], files_base: Path,
            data: dict[str, Path], probes: Path | None, harvest_source: str, export_to: Path,
            requests: Callable[[Artefacts], set[str]] | None = None) -> tuple[RunRecord, nbformat.NotebookNode]:
        """Execute `notebook` (with `files` beside it and `data` mounted), harvest into `export_to`.
        `requests(first step's values)`: the offered values the graders need (None: all of them)."""
        record = RunRecord()
        started = time.monotonic()
        spare = self._take_spare(data)
        sandbox = spare.sandbox if spare else self._new_sandbox(name, data)
        try:
            sandbox.add_files(files, files_base)
            sandbox.hand_over()
            record.defences = sandbox.defences.to_dict()
            record.warm_kernel = spare is not None
            execution = _Execution(notebook, sandbox, self.limits, record, first_kernel=spare.km if spare else None,
                                   requests=requests)
            if self.warm:   # the next submission's kernel imports while this one's cells run
                execution.on_first_kernel_ready = lambda: self.prestart(data)
            execution.run(probes, harvest_source)
            record.defences = sandbox.defences.to_dict()   # with how its kernels were started
            peak = sandbox.peak_memory_bytes()
            record.peak_memory_mib = round(peak / 2**20, 1) if peak else None
            record.export_problems = copy_out(sandbox.export_dir, export_to)
        finally:
            sandbox.__exit__(None, None, None)
        record.seconds = round(time.monotonic() - started, 2)
        return record, execution.executed

    # -- spares -----------------------------------------------------------------------------------
    def prestart(self, data: dict[str, Path]) -> None:
        """Start the spare kernel for the next run (nothing when one is waiting already): its sandbox
        now, its kernel on the runner's own thread, since starting one is mostly waiting (for
        bubblewrap, the fork server, jupyter_client), which the running submission need not do. A
        spare that cannot be started costs the next submission its warm start, nothing more."""
        if self._spare is not None:
            return
        try:
            sandbox = self._new_sandbox("warm", data)
        except Exception as error:  # noqa: BLE001
            print(f"autograder: no spare kernel ({type(error).__name__}: {error})", file=sys.stderr)
            return
        if self._starter is None:
            self._starter = ThreadPoolExecutor(1, thread_name_prefix="spare kernel")
        self._spare = self._starter.submit(self._start_spare_kernel, sandbox, {k: str(v) for k, v in data.items()})

    def _start_spare_kernel(self, sandbox: Sandbox, data: dict[str, str]) -> "_Spare | None":
        km = None
        try:
            sandbox.hand_over()   # the kernel, as the private uid, writes its sockets in runtime/
            km = SandboxKernelManager(sandbox, warm_imports=self.warm_imports)
            run_sync(km.start_kernel)(extra_arguments=[])
        except Exception as error:  # noqa: BLE001
            sandbox.__exit__(None, None, None)
            if km is not None:
                release_kernel_manager(km)
            print(f"autograder: no spare kernel ({type(error).__name__}: {error})", file=sys.stderr)
            return None
        return _Spare(sandbox, km, data)

    def close(self) -> None:
        """Kill and remove the spare, if any (a worker's last act)."""
        spare = self._started_spare()
        if spare is not None:
            spare.discard()
        if self._starter is not None:
            self._starter.shutdown()
        server, self._fork_server = self._fork_server, None
        if server is not None:
            server.close()

    def _started_spare(self) -> "_Spare | None":
        """The spare, once its kernel has started (waits for that), now no longer the runner's."""
        starting, self._spare = self._spare, None
        return starting.result() if starting is not None else None

    def _take_spare(self, data: dict[str, Path]) -> "_Spare | None":
        spare = self._started_spare()
        if spare is None:
            return None
        if spare.data == {k: str(v) for k, v in data.items()} and spare.alive():
            return spare
        spare.discard()
        return None

    def _new_sandbox(self, name: str, data: dict[str, Path]) -> Sandbox:
        self.sandbox_base.mkdir(parents=True, exist_ok=True)
        if not self._swept:   # once per runner: what a killed grader left here
            remove_left_behind(self.sandbox_base)
            self._swept = True
        sandbox = Sandbox(self.sandbox_base, name, self.limits, weight_store=self.weight_store,
                          isolation=self.isolation).__enter__()
        sandbox.fork_server = self._running_fork_server()
        try:
            for relative, source in data.items():
                sandbox.mount_data(source, relative)
        except BaseException:
            sandbox.__exit__(None, None, None)
            raise
        return sandbox

    def _running_fork_server(self) -> ForkServer | None:
        """A worker's fork server (forkserver.py), started with its first sandbox: its zygote imports
        the heavy libraries once, and every later kernel is forked from it, imports done."""
        if not self.warm or not forks_kernels(self.isolation):
            return None
        if self._fork_server is not None and not self._fork_server.alive():
            self._fork_server.close()
            self._fork_server = None
        if self._fork_server is None:
            try:
                self._fork_server = ForkServer(self.warm_imports, kernel_environment(self.limits, self.weight_store))
            except OSError as error:
                print(f"autograder: no fork server ({error}); kernels start the plain way", file=sys.stderr)
        return self._fork_server


@dataclass
class _Spare:
    """A started sandbox and kernel waiting for one submission."""

    sandbox: Sandbox
    km: "SandboxKernelManager"
    data: dict[str, str]

    def alive(self) -> bool:
        process = self.km.process
        return process is not None and process.poll() is None

    def discard(self) -> None:
        self.sandbox.kill_all(self.km.process)
        release_kernel_manager(self.km)
        self.sandbox.__exit__(None, None, None)


def release_kernel_manager(km: AsyncKernelManager) -> None:
    """Its control socket, zmq context and connection files, once its kernel is dead."""
    try:
        run_sync(km.cleanup_resources)()
    except Exception as error:  # noqa: BLE001 - the grade is done; only a leak is left
        print(f"autograder: a kernel manager's sockets not closed ({error!r})", file=sys.stderr)


def _is_module(notebook) -> bool:
    return notebook.get("metadata", {}).get("autograder", {}).get("source") == "module"


class _Execution:
    """The student-code side of one grade: kernels started, cells run under deadlines, harvest.

    Usually one kernel runs every cell and then the harvest. When a cell kills the kernel (a
    segfault, the memory limit, `os._exit`) or cannot be interrupted, the work before it would be
    lost with the kernel's state; so the notebook is run again in a fresh kernel without that cell
    (at most MAX_KERNELS kernels), and the harvest collects what that run defined. Every kernel
    shares one deadline: a replay never makes a submission take longer than its limit.
    """

    MAX_KERNELS = 3

    def __init__(self, notebook, sandbox: Sandbox, limits: Limits, record: RunRecord, *,
                 first_kernel: SandboxKernelManager | None = None,
                 requests: Callable[[Artefacts], set[str]] | None = None):
        self.sandbox, self.limits, self.record = sandbox, limits, record
        self.requests = requests                      # between the harvest's steps (_requested)
        self.notebook = notebook
        self.from_module = _is_module(notebook)
        self.first_kernel = first_kernel              # a spare already started (SubmissionRunner)
        self.on_first_kernel_ready = lambda: None     # called once, when the first kernel answers
        now = time.monotonic()
        self.deadline = now + limits.total_timeout_s
        # The student's cells stop early enough to leave the harvest its time.
        self.cells_deadline = self.deadline - min(HARVEST_TIMEOUT_S, 0.25 * limits.total_timeout_s)
        self.deadline_hit = threading.Event()
        self.fatal: dict[int, CellRecord] = {}    # cells that killed a kernel, skipped in replays
        self.km = None
        self.executed = None

    # -- the whole run ---------------------------------------------------------------------------
    def run(self, probes: Path | None, harvest_source: str) -> None:
        watchdog = threading.Timer(self.limits.total_timeout_s, self._on_deadline)
        watchdog.daemon = True
        watchdog.start()
        try:
            for _kernel in range(self.MAX_KERNELS):
                fatal = self._run_kernel(probes, harvest_source)
                if fatal is None or not self._worth_a_replay():
                    break
                self.fatal[fatal.index] = fatal
        finally:
            watchdog.cancel()
        if self.deadline_hit.is_set():
            self.record.outcome = "timeout"
            self.record.message = (f"The submission ran past its time limit of {self.limits.total_timeout_s:.0f} s "
                                   "and was stopped; values not collected by then were not graded.")
        elif self.fatal and self.record.harvest_status == "ok":
            skipped = ", ".join(str(i + 1) for i in sorted(self.fatal))
            self.record.message += (f" The notebook was run again in a fresh kernel without cell {skipped}; "
                                    "what that run computed was graded.")

    def _worth_a_replay(self) -> bool:
        """A replay needs time left for the cells before the fatal one, roughly."""
        spent = sum(c.seconds for c in self.record.cells if c.status == "ok")
        return not self.deadline_hit.is_set() and time.monotonic() + spent + 10 < self.cells_deadline

    # -- one kernel ------------------------------------------------------------------------------
    def _run_kernel(self, probes: Path | None, harvest_source: str) -> CellRecord | None:
        """Start a kernel, run the cells (skipping known fatal ones), harvest; the fatal cell if any."""
        self.record.cells = []
        self.record.harvest_status, self.record.harvest_error = "not run", ""
        self.executed = nbformat.from_dict(json.loads(json.dumps(self.notebook)))
        self.km = self.first_kernel or SandboxKernelManager(self.sandbox)
        self.first_kernel = None    # a replay starts a fresh kernel
        self.client = CappedNotebookClient(
            self.executed, km=self.km, timeout=int(self.limits.cell_timeout_s), allow_errors=True,
            interrupt_on_timeout=True, record_timing=False, startup_timeout=120,
            error_on_timeout={"ename": TIMEOUT_ENAME, "evalue": "cell time limit", "traceback": []},
            resources={"metadata": {"path": str(self.sandbox.work)}}, shutdown_kernel="immediate",
            max_output_bytes=self.limits.max_output_bytes, iopub_timeout=10)
        self.oom_kills_before = self.sandbox.oom_kill_count()
        fatal = None
        try:
            starting = time.monotonic()
            with self.client.setup_kernel():
                self.record.kernel_start_seconds += round(time.monotonic() - starting, 2)
                ready, self.on_first_kernel_ready = self.on_first_kernel_ready, lambda: None
                ready()
                if self.from_module:
                    self._keep_figures_between_cells()
                fatal = self._run_cells()
                if fatal is None and not self.deadline_hit.is_set():
                    self._harvest(probes, harvest_source)
        except DeadKernelError:
            fatal = self._note_death(self._next_cell_index())
        except RuntimeError as error:  # kernel failed to start, or died while starting
            self.record.outcome = "not started"
            self.record.message = f"The kernel could not be started: {str(error)[:300]}"
        finally:
            self.sandbox.kill_all(self.km.process)
            self._release_channels()
        for index in range(self._next_cell_index(), len(self.executed.cells)):
            if self.executed.cells[index].cell_type == "code":
                self.record.cells.append(CellRecord(index, "not run", _head(self.executed.cells[index].source)))
        return fatal

    def _release_channels(self) -> None:
        """Close the dead kernel's ZeroMQ channels, sockets and contexts. nbclient leaves them open
        when it did not make the kernel manager: a worker would keep a heartbeat thread and two
        contexts per entry, and a context finalised beside its socket at exit can block forever."""
        kc, self.client.kc = self.client.kc, None
        try:
            if kc is not None:
                kc.stop_channels()
        except Exception as error:  # noqa: BLE001 - the grade is done; only a leak is left
            print(f"autograder: a kernel's channels not closed ({error!r})", file=sys.stderr)
        release_kernel_manager(self.km)

    def _keep_figures_between_cells(self) -> None:
        """A module cut into cells keeps one script's figures: pyplot calls in later cells (a
        colorbar after an imshow) still find their figure. Set in the kernel, not on its command
        line, so that a spare kernel serves notebooks and modules alike."""
        cell = nbformat.v4.new_code_cell(
            "from matplotlib_inline.backend_inline import InlineBackend as _B\n"
            "_B.instance().close_figures = False\ndel _B\n")
        self.executed.cells.append(cell)
        try:
            self.client.execute_cell(cell, len(self.executed.cells) - 1, store_history=False)
        finally:
            self.executed.cells.pop()

    def _next_cell_index(self) -> int:
        """The notebook index after the last recorded cell (markdown cells have no record)."""
        return self.record.cells[-1].index + 1 if self.record.cells else 0

    def _on_deadline(self) -> None:
        self.deadline_hit.set()
        if self.km is not None:
            self.sandbox.kill_all(self.km.process)

    def _run_cells(self) -> CellRecord | None:
        """Execute every code cell; returns the record of a cell that ended the kernel, if one did."""
        for index, cell in enumerate(self.executed.cells):
            if cell.cell_type != "code":
                continue
            if index in self.fatal:
                self._skip(index, cell)
                continue
            if self.deadline_hit.is_set():
                return None
            if time.monotonic() >= self.cells_deadline - 1:
                self._stop_early(index)
                return None
            self.client.timeout = max(1, int(min(self.limits.cell_timeout_s, self.cells_deadline - time.monotonic())))
            started = time.monotonic()
            self.client.timed_out = False
            try:
                self.client.execute_cell(cell, index)
            except DeadKernelError:
                return self._note_death(index, started)
            except CellControlSignal:
                pass
            self.record.cells.append(self._cell_record(index, cell, time.monotonic() - started))
            if self.record.cells[-1].status == "timeout" and not self._kernel_recovered():
                self.record.cells[-1].error = "did not stop when interrupted; the kernel was stopped"
                self.record.outcome = "timeout"
                self.record.message = (f"Cell {index + 1} ran past the per-cell limit of "
                                       f"{self.limits.cell_timeout_s:.0f} s and could not be interrupted.")
                return self.record.cells[-1]
        return None

    def _skip(self, index: int, cell) -> None:
        """A cell that ended an earlier kernel: keep its first record, do not run it again."""
        first = self.fatal[index]
        self.record.cells.append(first)
        cell.outputs = [nbformat.v4.new_output(
            "stream", name="stderr",
            text=f"[autograder: this cell ended the kernel ({first.error or first.status}); "
                 "it was skipped when the notebook was run again]\n")]

    def _stop_early(self, index: int) -> None:
        """Out of time for cells: leave the rest unrun, keep the kernel for the harvest."""
        self.record.outcome = "timeout"
        self.record.message = (f"The submission's cells used up its time limit of "
                               f"{self.limits.total_timeout_s:.0f} s; cells from cell {index + 1} on were not "
                               "run, and the values defined by then were graded.")

    def _kernel_recovered(self) -> bool:
        """After an interrupt, is the kernel idle again? (a loop may swallow KeyboardInterrupt)"""
        kc = self.client.kc

        async def ask():
            return await ensure_async(kc.kernel_info(reply=True, timeout=10))
        try:
            return bool(run_sync(ask)())
        except Exception:  # noqa: BLE001 - a timeout or a dead channel both mean no
            return False

    def _cell_record(self, index: int, cell, seconds: float) -> CellRecord:
        record = CellRecord(index, "ok", _head(cell.source), seconds=round(seconds, 2))
        if self.client.timed_out:
            record.status, record.error = "timeout", f"stopped after the {self.client.timeout} s cell limit"
        for output in cell.get("outputs", []):
            if output.get("output_type") in ("display_data", "execute_result") and \
                    any(k.startswith("image/") for k in output.get("data", {})):
                record.has_image = True
            if output.get("output_type") == "error" and record.status == "ok":
                if output.get("ename") in (TIMEOUT_ENAME, "KeyboardInterrupt") and seconds >= self.client.timeout - 0.5:
                    record.status, record.error = "timeout", f"stopped after the {self.client.timeout} s cell limit"
                else:
                    record.status = "error"
                    record.error = f"{output.get('ename', '')}: {output.get('evalue', '')}"[:500]
                    record.traceback_tail = _strip_ansi("\n".join(output.get("traceback", [])[-3:]))[-1500:]
        return record

    def _note_death(self, index: int, started: float | None = None) -> CellRecord | None:
        if self.deadline_hit.is_set():
            return None
        seconds = round(time.monotonic() - started, 2) if started else 0.0
        cell_source = self.executed.cells[index].source if index < len(self.executed.cells) else ""
        record = CellRecord(index, "died", _head(cell_source), seconds=seconds)
        self.record.cells.append(record)
        process = self.km.process
        code = process.poll() if process is not None else None
        if self.sandbox.oom_kill_count() > self.oom_kills_before:
            outcome = "memory"
            cause = f"it went over the memory limit of {self.limits.memory_bytes / 2**30:.1f} GiB"
        else:
            outcome, cause = "died", _exit_cause(code)
        record.error = cause
        if not self.fatal:   # the report tells the first death; replays add to its message
            self.record.outcome = outcome
            self.record.message = f"The kernel died in cell {index + 1}: {cause}."
        return record if index < len(self.executed.cells) else None

    def _harvest(self, probes: Path | None, harvest_source: str) -> None:
        """Collect the student's values in two steps. The first exports what every grade needs and
        offers the costly rest (Exporter.on_request); the graders' `requests` then read the first
        step's export (a checked copy, in the grader's process, beside the reference) and name what
        they need; the second step computes only that. The kernel stays up between the steps."""
        if probes is not None and not self.sandbox.probe_dir.exists():
            self.sandbox.add_probes(probes)
        started = time.monotonic()
        try:
            code = harvest_cell_code(harvest_source, self.sandbox.export_dir, self.sandbox.probe_dir)
            self.record.harvest_error = self._harvest_cell(code, HARVEST_TIMEOUT_S) or ""
            self.record.harvest_status = "failed" if self.record.harvest_error else "ok"
            wanted = self._requested() if self.record.harvest_status == "ok" else []
            if wanted:
                # The first step's values are exported already: a failure here costs only these.
                problem = self._harvest_cell(answer_cell_code(wanted),
                                             HARVEST_TIMEOUT_S - (time.monotonic() - started))
                if problem:
                    self.record.harvest_error = f"computing {', '.join(wanted)}: {problem}"
        finally:
            self.record.harvest_seconds = round(time.monotonic() - started, 2)

    def _harvest_cell(self, code: str, timeout: float) -> str | None:
        """Run one harvest cell in the student's kernel; what went wrong, or None."""
        cell = nbformat.v4.new_code_cell(code)
        self.executed.cells.append(cell)
        self.client.timeout = max(1, int(min(timeout, self.deadline - time.monotonic())))
        try:
            self.client.execute_cell(cell, len(self.executed.cells) - 1, store_history=False)
            errors = [o for o in cell.outputs if o.get("output_type") == "error"]
            return f"{errors[0].get('ename')}: {errors[0].get('evalue')}"[:500] if errors else None
        except DeadKernelError:
            memory = " (memory limit)" if self.sandbox.oom_kill_count() > self.oom_kills_before else ""
            return "the kernel died while the grader collected the values" + memory
        finally:
            self.executed.cells.pop()

    def _requested(self) -> list[str]:
        """Between the steps, in the grader's process: the offered values the graders need."""
        with tempfile.TemporaryDirectory(prefix="autograder-first-step-") as first:
            copy_out(self.sandbox.export_dir, Path(first))
            student = Artefacts(Path(first))
            offered = [name for name in student.entries if student.status(name) == ON_REQUEST]
            if not offered or self.requests is None:
                return offered
            try:
                wanted = set(self.requests(student))
            except Exception:  # noqa: BLE001 - when in doubt, compute everything (the old single step)
                return offered
            return [name for name in offered if name in wanted]


def harvest_cell_code(harvest_source: str, export_dir: Path, probe_dir: Path) -> str:
    """The harvest's first step, run after the student's cells in its own namespace so no student
    name is touched. The exporter stays in the kernel for the second step (answer_cell_code)."""
    return (
        # The memory the student's cells could not use (RLIMIT_DATA's hard limit) is the harvest's.
        "import resource as _r; _r.setrlimit(_r.RLIMIT_DATA, (_r.getrlimit(_r.RLIMIT_DATA)[1],) * 2); del _r\n"
        "def _autograder_harvest():\n"
        "    namespace = dict(globals())\n"
        "    module = {'__name__': '_autograder_harvest'}\n"
        f"    exec(compile({ENCODER_SOURCE!r}, '<autograder-encode>', 'exec'), module)\n"
        f"    exec(compile({harvest_source!r}, '<autograder-harvest>', 'exec'), module)\n"
        f"    exporter = module['Exporter']({str(export_dir)!r})\n"
        f"    module['harvest'](namespace, exporter, {str(probe_dir)!r})\n"
        "    return exporter\n"
        "_autograder_exporter = _autograder_harvest()\n"
        "del _autograder_harvest\n"
    )


def answer_cell_code(names: list[str]) -> str:
    """The harvest's second step: compute the offered values the graders asked for."""
    return f"_autograder_exporter.answer({[str(name) for name in names]!r})\ndel _autograder_exporter\n"


def _exit_cause(code: int | None) -> str:
    if code is None:
        return "it stopped responding"
    signal_number = -code if code < 0 else code - 128 if code > 128 else None
    names = {9: "killed (SIGKILL)", 11: "segmentation fault (SIGSEGV)", 6: "aborted (SIGABRT)",
             24: "CPU time limit exceeded (SIGXCPU)", 25: "file size limit exceeded (SIGXFSZ)",
             15: "terminated (SIGTERM)", 7: "bus error (SIGBUS)", 8: "floating point exception (SIGFPE)"}
    if signal_number in names:
        return names[signal_number]
    return f"the process exited with code {code}"


def _head(source: str, lines: int = 3) -> str:
    return "\n".join(source.splitlines()[:lines])[:400]


def _strip_ansi(text: str) -> str:
    import re
    return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)
