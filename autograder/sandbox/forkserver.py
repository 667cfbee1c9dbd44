"""A warm kernel for every submission without importing torch for each: the grader's side of the fork server.

A batch worker starts one zygote (zygote.py): a process that imports the assignment's heavy
libraries once and forks a kernel per submission into that submission's sandbox. The sandbox is
the one bubblewrap builds as before, around a small *holder* process (`holder_command`) that waits
for the kernel's end and exits the same way, so jupyter_client watches, interrupts and kills the
same process tree as for a directly started kernel:

    Popen: launch.py (cgroups, rlimits) -> bwrap (namespaces, mounts) -> setpriv (private uid)
           -> holder (waits on a pipe)
    zygote --fork--> middle (joins the holder's cgroups and namespaces) --fork--> kernel (jailed)

Used only where bubblewrap and a private uid are (root); elsewhere kernels start as before.
`AUTOGRADER_FORK_SERVER=0` turns it off.
"""
from __future__ import annotations

import json
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from .jail import owner_gone, process_uids, write_owner

ZYGOTE = Path(__file__).with_name("zygote.py")
FOLDER_PREFIX = "autograder-zygote-"   # in the temporary folder: the zygote's HOME, TMPDIR and log
# What every kernel imports whatever the assignment. ipykernel.debugger (and debugpy under it) is
# imported when a kernel starts, not with ipykernel.ipkernel: 70-90 ms of each kernel's start.
KERNEL_MODULES = ("ipykernel.kernelapp", "ipykernel.ipkernel", "ipykernel.debugger")
REPLY_TIMEOUT_S = 90      # the first request waits for the zygote's imports (seconds on a busy machine)
HOLDER_TIMEOUT_S = 30     # bubblewrap building the sandbox around the holder

# The holder: bubblewrap's command in the sandbox. Its end mirrors the kernel's, which the middle
# writes to its pipe ("exit N" / "signal N"); without a word (the middle killed) it ends as killed.
HOLDER_SOURCE = """\
import os, signal, sys
said = b""
while True:
    chunk = os.read(int(sys.argv[1]), 64)
    if not chunk:
        break
    said += chunk
kind, _, value = said.decode(errors="replace").partition(" ")
if kind == "exit" and value.lstrip("-").isdigit():
    os._exit(int(value) & 0xFF)
number = int(value) if kind == "signal" and value.isdigit() else signal.SIGKILL
if number not in (signal.SIGKILL, signal.SIGSTOP):
    signal.signal(number, signal.SIG_DFL)
os.kill(os.getpid(), number)
os._exit(128 + number)
"""


class ForkFailed(RuntimeError):
    """The fork server could not start this kernel (the caller starts one the plain way)."""


def holder_command(status_fd: int) -> list[str]:
    return [sys.executable, "-I", "-S", "-c", HOLDER_SOURCE, str(status_fd)]


class ForkServer:
    """One zygote process and the channel to it. Thread-safe; one request at a time."""

    def __init__(self, preload: tuple[str, ...], environment: dict[str, str]):
        remove_left_behind_folders()
        self._folder = Path(tempfile.mkdtemp(prefix=FOLDER_PREFIX))   # 0700, the grader's
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        environment = {**environment, "HOME": str(self._folder), "TMPDIR": str(self._folder),
                       "MPLCONFIGDIR": str(self._folder / "matplotlib")}
        with open(self._folder / "zygote.log", "ab") as log:
            # Not in its own session: a grader killed by a signal to its group takes it along.
            self.process = subprocess.Popen(
                [sys.executable, "-P", str(ZYGOTE), str(theirs.fileno()),
                 json.dumps([*KERNEL_MODULES, *preload])],
                env=environment, cwd=self._folder, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                pass_fds=(theirs.fileno(),))
        theirs.close()
        write_owner(self._folder, self.process.pid)
        self._channel = ours
        self._replies = ours.makefile("rb")
        self._lock = threading.Lock()

    def alive(self) -> bool:
        return self.process.poll() is None

    def fork_kernel(self, holder_pid: int, *, request: dict, log_fd: int, status_fd: int) -> int:
        """Fork a kernel into the sandbox around `holder_pid`; return the middle's pid once the
        kernel is jailed. `request`: cgroups, rlimits, uid, env, cwd, argv (ipykernel's)."""
        pidfd = os.pidfd_open(holder_pid)
        try:
            root = os.open(f"/proc/{holder_pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                if select.select([pidfd], [], [], 0)[0]:   # it ended: /proc/PID may be another process
                    raise ForkFailed("the sandbox's holder ended before the kernel was forked")
                reply = self._ask(request, [pidfd, root, log_fd, status_fd])
            finally:
                os.close(root)
        finally:
            os.close(pidfd)
        if "error" in reply:
            raise ForkFailed(reply["error"])
        return int(reply["pid"])

    def _ask(self, request: dict, fds: list[int]) -> dict:
        with self._lock:
            if not self.alive():
                raise ForkFailed(f"the fork server ended (exit {self.process.returncode})")
            self._channel.settimeout(REPLY_TIMEOUT_S)
            try:
                socket.send_fds(self._channel, [json.dumps(request).encode()], fds)
                line = self._replies.readline()
            except OSError as error:
                # A late answer would be read as the next request's: this zygote is done with.
                self.process.kill()
                raise ForkFailed(f"the fork server did not answer: {error}") from None
            if not line:
                raise ForkFailed("the fork server closed its channel")
            return json.loads(line)

    def close(self) -> None:
        """End the zygote (kernels it forked live on in their sandboxes until those are removed)."""
        self._replies.close()
        self._channel.close()     # the zygote reads EOF and returns
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self._folder, ignore_errors=True)


def remove_left_behind_folders(base: Path | None = None) -> list[Path]:
    """Remove the folders of zygotes that are gone. A zygote leaves when its grader's end of the
    channel closes; a grader that closes the fork server removes the folder, one that ends without
    (killed by a signal, a script that never calls close) leaves it. A folder without an owner file
    is still being made (or older than owner files): kept."""
    removed = []
    for folder in sorted(Path(base or tempfile.gettempdir()).glob(f"{FOLDER_PREFIX}*")):
        if owner_gone(folder):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def find_holder(launched_pid: int, uid: int, timeout: float = HOLDER_TIMEOUT_S) -> int:
    """The holder's pid: the grandchild of the launched process (bwrap -> its pid-1 init -> the
    command), once it runs as the sandbox's uid (setpriv's switch comes after every mount)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for init in _children(launched_pid):
            for holder in _children(init):
                if process_uids(holder) == {uid}:
                    return holder
        if not _exists(launched_pid):
            raise ForkFailed("the sandbox ended while it was being built (see kernel.log)")
        time.sleep(0.005)
    raise ForkFailed(f"the sandbox's holder was not up after {timeout:.0f} s")


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (OSError, ValueError):
        return []


def _exists(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (OSError, IndexError):
        return False
