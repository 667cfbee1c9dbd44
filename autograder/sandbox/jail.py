"""One submission's sandbox: a fresh folder, and the command line that jails a process in it.

Layout on the host (every path is bound at the same path inside, so kernel sockets and the
connection file mean the same thing on both sides):

    <root>/work/        the student's working directory: their files, data/<assignment>/ (read-only)
    <root>/runtime/     kernel connection file and ipc sockets
    <root>/runtime/export/   where the harvest writes the safe artefacts
    <root>/runtime/probes/   grader-made inputs, copied in only after the student's cells ran

Defences, strongest first, each used where the machine allows it and recorded otherwise:
- bubblewrap: new mount/pid/net/ipc/uts namespaces; only the Python install, the venv, the weight
  store and the data are visible (read-only), the work folder is the only writable place; the
  network namespace has nothing but loopback, so no connection leaves the sandbox.
- setpriv: the kernel runs as a private unprivileged uid (so RLIMIT_NPROC binds, and it cannot
  write the weight store, the reference or the grader's output).
- cgroups (v1 or v2): memory and pids limits on the whole process tree, and a list of every
  process to kill at the end.
- a tmpfs of its own for the sandbox folder (root only): the student's files together cannot
  outgrow it, its pages count against the cgroup's memory limit, and unmounting it removes them.
- rlimits (always): CPU time, data segment, processes, file size, open files.
"""
from __future__ import annotations

import functools
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from .limits import Defences, Limits

LAUNCHER = Path(__file__).with_name("launch.py")
CGROUP_ROOT = Path("/sys/fs/cgroup")
ISOLATION_LEVELS = ("auto", "bwrap", "uid", "none")   # see Sandbox.__init__ and the README
HARVEST_MEMORY_HEADROOM = 1.2   # RLIMIT_DATA's hard limit over the soft one (see wrap())
OWNER_FILE = "owner"            # <root>/owner: "<pid> <start time>" of the grader process that made it


@functools.lru_cache(maxsize=None)
def bubblewrap_works() -> bool:
    """True when bwrap can build a sandbox here (installed, and we may create namespaces)."""
    bwrap = shutil.which("bwrap")
    if not bwrap or os.geteuid() != 0:
        return False
    probe = [bwrap, "--ro-bind", "/", "/", "--unshare-net", "--unshare-pid", "--die-with-parent", "true"]
    try:
        return subprocess.run(probe, capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def bwrap_system_args() -> list[str]:
    """bubblewrap with its own pid, network, ipc, uts and cgroup namespaces (no user namespace: as root,
    a jailed process keeps its real uid, which setpriv then drops), dying with its parent, over a
    read-only /usr and the root's links into it, a fresh /proc, /dev and /tmp. Callers add the rest."""
    args = ["bwrap", "--die-with-parent", "--new-session",
            "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            "--ro-bind", "/usr", "/usr", "--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--tmpfs", "/tmp"]
    for link in ("bin", "lib", "lib64", "sbin"):
        path = Path("/") / link
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.exists():
            args += ["--ro-bind", str(path), str(path)]
    return args


def bwrap_parent_dirs(paths: list[Path]) -> list[str]:
    """bubblewrap creates the missing parents of a bind target mode 0700, closed to a private uid:
    these arguments make them 0755 first (an existing folder keeps its mode)."""
    parents = sorted({p for path in paths for p in path.parents if str(p) != "/"}, key=lambda p: len(p.parts))
    return [arg for parent in parents for arg in ("--perms", "0755", "--dir", str(parent))]


def setpriv_command(uid: int) -> list[str]:
    """The setpriv prefix that runs a command as `uid`: no groups, no capabilities, no new privileges."""
    return [shutil.which("setpriv"), f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
            "--no-new-privs", "--inh-caps=-all", "--bounding-set=-all", "--"]


def _cgroup_layout() -> str | None:
    """'v2', 'v1' or None: which cgroup hierarchy we can create groups in."""
    if os.geteuid() != 0:
        return None
    if (CGROUP_ROOT / "cgroup.controllers").exists():
        return "v2" if os.access(CGROUP_ROOT, os.W_OK) else None
    if all(os.access(CGROUP_ROOT / c, os.W_OK) for c in ("memory", "pids")):
        return "v1"
    return None


def _uses_bwrap(isolation: str) -> bool:
    return isolation in ("auto", "bwrap") and bubblewrap_works()


def _uses_private_uid(isolation: str) -> bool:
    """A private uid needs root and setpriv, not bubblewrap: where namespaces are not allowed (a
    container), the student's code still runs as nobody in particular, under RLIMIT_NPROC."""
    return isolation != "none" and os.geteuid() == 0 and shutil.which("setpriv") is not None


def forks_kernels(isolation: str) -> bool:
    """Whether kernels can be forked from a fork server here (forkserver.py): bubblewrap and a
    private uid, and not turned off (AUTOGRADER_FORK_SERVER=0)."""
    wanted = os.environ.get("AUTOGRADER_FORK_SERVER", "1") != "0"
    return wanted and _uses_bwrap(isolation) and _uses_private_uid(isolation)


def kernel_environment(limits: Limits, weight_store: Path) -> dict[str, str]:
    """The part of a kernel's environment that is the same in every sandbox (a fork server's
    zygote starts with it: some libraries read it once, at import)."""
    threads = str(limits.threads)
    return {
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        "TORCH_HOME": str(Path(weight_store).resolve()),
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        "OMP_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
    }


def kernels_see_the_file_tree(isolation: str) -> bool:
    """Whether kernels will run as a private uid on the machine's own file tree (root and setpriv,
    but no bubblewrap): then whatever other users may read, a student may read, and the grader
    must shut its own folders (Workspace.hide_from_kernels)."""
    return _uses_private_uid(isolation) and not _uses_bwrap(isolation)


class Sandbox:
    """A fresh folder and jail for one run. Use as a context manager: the exit kills and removes."""

    def __init__(self, base: Path, name: str, limits: Limits, *, weight_store: Path,
                 isolation: str = "auto"):
        self.limits = limits
        self.weight_store = weight_store.resolve()
        self.root = Path(base).resolve() / f"{_safe(name)}-{secrets.token_hex(4)}"
        self.work = self.root / "work"
        self.runtime = self.root / "runtime"
        self.export_dir = self.runtime / "export"
        self.probe_dir = self.runtime / "probes"
        self.kernel_log = self.root / "kernel.log"
        self.defences = Defences()
        self.uid = _unused_uid(Path(base))
        if isolation not in ISOLATION_LEVELS:
            raise ValueError(f"isolation must be one of {', '.join(ISOLATION_LEVELS)}, not {isolation!r}")
        self._use_bwrap = _uses_bwrap(isolation)
        if isolation == "bwrap" and not self._use_bwrap:
            raise RuntimeError("bubblewrap isolation was required but does not work here")
        self._private_uid = _uses_private_uid(isolation)
        self._cgroups: list[Path] = []
        self._cgroup_kind = _cgroup_layout() if isolation != "none" else None
        self._data_mounts: list[tuple[Path, Path]] = []
        self._tmpfs = False
        self._isolation = isolation
        self.fork_server = None   # forkserver.ForkServer: set by a batch worker's runner (execution.py)

    @property
    def runs_as_private_uid(self) -> bool:
        return self._private_uid

    # -- building ----------------------------------------------------------------------------
    def __enter__(self) -> "Sandbox":
        self.root.mkdir(parents=True)
        if self._private_uid and not self._use_bwrap and not _searchable_by_others(self.root.parent):
            # Without bubblewrap's own view of the tree the private uid must reach the folder itself.
            self._private_uid = False
            self.defences.lack("private uid", f"{self.root.parent} is not reachable by other users")
        self._mount_tmpfs()
        # Who made it: a grader killed before it could clean up (SIGKILL, the OOM killer) leaves its
        # sandboxes behind, and remove_left_behind() tells them from live ones by this.
        write_owner(self.root, os.getpid())
        for folder in (self.work, self.runtime, self.export_dir):
            folder.mkdir(parents=True)
        self._make_cgroups()
        self._note_defences()
        return self

    def add_files(self, files: list[Path], base: Path) -> None:
        """Copy the submission's files into the work folder, keeping their relative layout."""
        for path in files:
            target = self.work / path.relative_to(base)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)

    def mount_data(self, source: Path, relative: str) -> None:
        """Make `source` visible read-only at work/<relative> (a bind mount, or a copy without bwrap)."""
        target = self.work / relative
        if self._use_bwrap:
            target.mkdir(parents=True, exist_ok=True)
            self._data_mounts.append((source.resolve(), target))
        else:
            shutil.copytree(source, target)

    def hand_over(self) -> None:
        """Give the writable folders to the sandbox's private uid (only when we will switch to it)."""
        if not self.runs_as_private_uid:
            return
        for folder in (self.work, self.runtime, self.export_dir):
            for path in [folder, *folder.rglob("*")]:
                if not any(path == m or m in path.parents for _s, m in self._data_mounts):
                    os.lchown(path, self.uid, self.uid)
            # Private to this uid: without bubblewrap another submission's kernel (another uid,
            # beside it in the sandbox folder) would otherwise read this one's files.
            os.chmod(folder, 0o700)
        os.chmod(self.root, 0o755)

    def add_probes(self, source: Path) -> None:
        """Copy grader-made inputs in, read-only to the student (done after their cells ran)."""
        shutil.copytree(source, self.probe_dir, dirs_exist_ok=True)
        for path in [self.probe_dir, *self.probe_dir.rglob("*")]:
            os.chmod(path, 0o755 if path.is_dir() else 0o644)

    # -- the command line ---------------------------------------------------------------------
    def environment(self) -> dict[str, str]:
        """The kernel's whole environment: nothing of the grader's leaks in."""
        return {
            **kernel_environment(self.limits, self.weight_store),
            "HOME": str(self.work),
            "TMPDIR": "/tmp" if self._use_bwrap else str(self.runtime),
            "IPYTHONDIR": str(self.runtime / "ipython"),
            "MPLCONFIGDIR": str(self.runtime / "matplotlib"),
        }

    def wrap(self, command: list[str]) -> list[str]:
        """Return `command` wrapped in the launcher (limits), bubblewrap and setpriv."""
        inner = list(command)
        if self._private_uid:
            inner = [*setpriv_command(self.uid), *inner]
        if self._use_bwrap:
            inner = [*self._bwrap_args(), "--", *inner]
        return [sys.executable, "-I", str(LAUNCHER), json.dumps(self.launch_spec()), "--", *inner]

    def launch_spec(self) -> dict:
        """The limits a kernel takes before it runs: launch.py applies them, and so does a kernel
        forked by the fork server (zygote.py)."""
        return {"rlimits": {
            "cpu_seconds": self.limits.cpu_seconds,
            "memory_bytes": self.limits.memory_bytes,
            # The hard limit sits higher: the harvest raises its soft limit to it, so a submission
            # that keeps its whole allowance (a memory bomb it holds on to) cannot starve the
            # grader's own work in the kernel. The cgroup (1.25x) is above both.
            "memory_hard_bytes": int(self.limits.memory_bytes * HARVEST_MEMORY_HEADROOM),
            "max_processes": self.limits.max_processes if self.runs_as_private_uid else None,
            "max_file_bytes": self.limits.max_file_bytes,
            "max_open_files": self.limits.max_open_files,
        }, "cgroups": [str(c) for c in self._cgroups]}

    @property
    def forks_kernels(self) -> bool:
        """Whether a fork server may start this sandbox's kernels: it joins bubblewrap's namespaces
        and switches to the private uid itself, so it needs both (and root)."""
        return self.fork_server is not None and self._use_bwrap and self.runs_as_private_uid

    def _bwrap_args(self) -> list[str]:
        args = [*bwrap_system_args(), "--hostname", "sandbox", "--ro-bind", "/etc", "/etc"]
        shared = _python_roots() + [self.weight_store]
        args += bwrap_parent_dirs([*shared, self.root])
        for path in shared:
            args += ["--ro-bind", str(path), str(path)]
        args += ["--bind", str(self.root), str(self.root)]
        for source, target in self._data_mounts:
            args += ["--ro-bind", str(source), str(target)]
        env = self.environment()
        args += ["--clearenv"] + [a for k, v in env.items() for a in ("--setenv", k, v)]
        args += ["--chdir", str(self.work)]
        return args

    # -- the folder's own filesystem, cgroups and clean-up ------------------------------------
    def _mount_tmpfs(self) -> None:
        """Put the sandbox folder on a size-limited tmpfs, so a disk bomb fills only that."""
        if self._isolation == "none" or os.geteuid() != 0 or not shutil.which("mount"):
            return
        size = self.limits.max_disk_bytes
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755,nosuid,nodev",
                               "autograder-sandbox", str(self.root)], capture_output=True, text=True)
        self._tmpfs = done.returncode == 0
        if not self._tmpfs:
            self.defences.lack("own size-limited folder (tmpfs)", done.stderr.strip()[:120] or "mount failed")

    def _unmount_tmpfs(self) -> None:
        if self._tmpfs:
            # Lazy: a process that escaped kill_all cannot keep the mount (or the memory) alive.
            subprocess.run(["umount", "-l", str(self.root)], capture_output=True)
            self._tmpfs = False

    def _make_cgroups(self) -> None:
        name = f"autograder-{self.root.name}"
        try:
            if self._cgroup_kind == "v1":
                mem, pids = CGROUP_ROOT / "memory" / name, CGROUP_ROOT / "pids" / name
                mem.mkdir(), pids.mkdir()
                self._cgroups = [mem, pids]
                # The cgroup limit sits above RLIMIT_DATA: the rlimit gives a catchable
                # MemoryError first; the cgroup catches what the rlimit cannot see (tmpfs, children).
                (mem / "memory.limit_in_bytes").write_text(str(int(self.limits.memory_bytes * 1.25)))
                (pids / "pids.max").write_text(str(self.limits.max_processes))
            elif self._cgroup_kind == "v2":
                group = CGROUP_ROOT / name
                group.mkdir()
                self._cgroups = [group]
                (group / "memory.max").write_text(str(int(self.limits.memory_bytes * 1.25)))
                (group / "memory.swap.max").write_text("0")
                (group / "pids.max").write_text(str(self.limits.max_processes))
        except OSError as error:
            self._cgroup_kind = None
            self._remove_cgroups()
            self.defences.lack("cgroups", f"could not create: {error.strerror}")

    def _note_defences(self) -> None:
        d = self.defences
        d.have("own process (Jupyter kernel), scrubbed environment, fresh sandbox folder")
        d.have("rlimits: CPU time, memory (data segment), file size, open files")
        if self._use_bwrap:
            d.have("bubblewrap: read-only system, sandbox folder the only writable place")
            d.have("no network: own network namespace with loopback only")
            d.have("own pid namespace: every process killed at the end")
            d.have("reference and graders not mounted in the sandbox")
        else:
            why = ("not root" if os.geteuid() != 0 else "not asked for" if self._isolation in ("uid", "none")
                   else "bubblewrap missing or not permitted")
            d.lack("bubblewrap (filesystem, network and pid isolation)", why)
        if self._private_uid:
            d.have(f"private unprivileged uid {self.uid}; process-count limit; its processes killed at the end")
        elif not any(m.startswith("private uid") for m in d.missing):
            why = "not asked for" if self._isolation == "none" else "not root" if os.geteuid() != 0 \
                else "setpriv not installed"
            d.lack("private uid and process-count limit", why)
        if self._tmpfs:
            d.have(f"sandbox folder on its own tmpfs of {self.limits.max_disk_bytes / 2**30:.1f} GiB "
                   "(all files together; counts as memory)")
        if self._cgroups:
            d.have(f"cgroup {self._cgroup_kind}: memory and pids limits on the whole process tree")
        elif not any(m.startswith("cgroups") for m in d.missing):
            d.lack("cgroups", "not writable here")

    def oom_kill_count(self) -> int:
        """How many processes the cgroup's OOM killer has killed so far (0 without cgroups)."""
        for group in self._cgroups:
            for name in ("memory.events", "memory.oom_control"):
                try:
                    for line in (group / name).read_text().splitlines():
                        key, _, value = line.partition(" ")
                        if key == "oom_kill":
                            return int(value)
                except (OSError, ValueError):
                    continue
        return 0

    def peak_memory_bytes(self) -> int | None:
        """The most memory the run's process tree held at once (cgroup accounting), if known."""
        for group in self._cgroups:
            for name in ("memory.max_usage_in_bytes", "memory.peak"):
                try:
                    return int((group / name).read_text().split()[0])
                except (OSError, ValueError, IndexError):
                    continue
        return None

    def kill_all(self, process: subprocess.Popen | None = None) -> None:
        """Kill every process of the run: the launched tree, its session, and its cgroups."""
        if process is not None and process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                process.wait(timeout=10)   # reaped: a long-lived worker keeps no zombie per kernel
            except subprocess.TimeoutExpired:
                pass
        pause, deadline = 0.002, time.monotonic() + 2.5
        while time.monotonic() < deadline:
            pids = self._cgroup_pids() | self._private_uid_pids()
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            # A killed kernel takes a few ms to leave (unmapping torch): look again soon, then less often.
            time.sleep(pause)
            pause = min(2 * pause, 0.05)

    def _private_uid_pids(self) -> set[int]:
        """Every process running as the sandbox's private uid (a daemon that left its session too)."""
        if not self._private_uid:
            return set()
        return {pid for pid, uids in _process_uids() if self.uid in uids}

    def _cgroup_pids(self) -> set[int]:
        pids: set[int] = set()
        for group in self._cgroups:
            try:
                pids.update(int(p) for p in (group / "cgroup.procs").read_text().split())
            except OSError:
                pass
        return pids

    def _remove_cgroups(self) -> None:
        for group in self._cgroups:
            for _ in range(20):
                try:
                    group.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)
        self._cgroups = []

    def __exit__(self, *exc) -> None:
        self.kill_all()
        self._remove_cgroups()
        self._unmount_tmpfs()
        shutil.rmtree(self.root, ignore_errors=True)

    @classmethod
    def left_behind(cls, root: Path) -> "Sandbox":
        """Enough of a sandbox another grader made and could not remove, for __exit__ to kill what
        runs in it and remove its cgroups, tmpfs and folder."""
        sandbox = cls.__new__(cls)
        sandbox.root = root
        name = f"autograder-{root.name}"
        sandbox._cgroups = [g for g in (CGROUP_ROOT / name, CGROUP_ROOT / "memory" / name, CGROUP_ROOT / "pids" / name)
                            if g.is_dir()]
        sandbox._tmpfs = os.path.ismount(root)
        try:
            sandbox.uid = (root / "work").stat().st_uid
        except OSError:
            sandbox.uid = 0
        sandbox._private_uid = sandbox.uid in PRIVATE_UIDS
        return sandbox


def remove_left_behind(base: Path) -> list[Path]:
    """Remove the sandboxes in `base` whose grader is gone: killed with SIGKILL or by the OOM killer,
    it ran no clean-up, and its sandboxes' tmpfs mounts (memory) and cgroups would stay until a
    reboot. Their kernels died with it (bubblewrap's --die-with-parent); what is left in their
    cgroups or runs as their uid is killed. A sandbox without an owner file is still being built."""
    removed = []
    for root in sorted(Path(base).glob("*")):
        if owner_gone(root):
            Sandbox.left_behind(root).__exit__(None, None, None)
            removed.append(root)
    return removed


def write_owner(folder: Path, pid: int) -> None:
    """Name the process a folder belongs to (`folder`/owner: its pid and start time)."""
    (folder / OWNER_FILE).write_text(f"{pid} {_start_time(pid)}")


def owner_gone(folder: Path) -> bool:
    """Whether the process write_owner named for `folder` has ended. False without a readable owner
    file: the folder is still being made (the owner is written once the folder is)."""
    try:
        pid, started = (folder / OWNER_FILE).read_text().split()
        return _start_time(int(pid)) != started
    except (OSError, ValueError):
        return False


def _start_time(pid: int) -> str | None:
    """When process `pid` started (clock ticks since boot: field 22 of /proc/PID/stat), None if it is
    gone; a pid and its start time name one process even after the pid is reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


PRIVATE_UIDS = range(100000, 160000)


def _unused_uid(base: Path, uids: range = PRIVATE_UIDS, handed_over: str = "*/work") -> int:
    """A private uid that no process and no other sandbox of this base holds: two sandboxes alive
    at once (two workers, or a run and the next one's spare) must never share a uid, or one
    student's code could signal or read the other's kernel. `handed_over`: the glob (under `base`)
    of the folders given to a uid before its process starts."""
    used = _uids_in_use(base, handed_over)
    for _ in range(100):
        uid = uids.start + secrets.randbelow(len(uids))
        if uid not in used:
            return uid
    raise RuntimeError(f"no unused private uid in {uids}")


def _uids_in_use(base: Path, handed_over: str) -> set[int]:
    used = set()
    for work in base.glob(handed_over):   # folders are handed over before their process starts
        try:
            used.add(work.stat().st_uid)
        except OSError:
            continue
    for _pid, uids in _process_uids():
        used.update(uids)
    return used


def _process_uids():
    """(pid, {real, effective, saved, fs uid}) of every process on the machine."""
    # Not Path.glob("[0-9]*/status"): its stat of a process that ends meanwhile raises ESRCH.
    for name in os.listdir("/proc"):
        if name.isdigit() and (uids := process_uids(int(name))):
            yield int(name), uids


def process_uids(pid: int) -> set[int]:
    """{real, effective, saved, fs uid} of process `pid`; empty when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Uid:"):
                return {int(u) for u in line.split()[1:]}
    except (OSError, ValueError):
        pass
    return set()


def _searchable_by_others(folder: Path) -> bool:
    return all(os.stat(p).st_mode & 0o001 for p in [folder, *folder.parents])


def _python_roots() -> list[Path]:
    """The folders the sandbox's Python needs: the venv and the interpreter it was made from."""
    roots = {Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()}
    return sorted(r for r in roots if not str(r).startswith("/usr"))


def _safe(name: str) -> str:
    kept = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
    return kept[:40] or "submission"
