"""A jail for the system tools the harness runs on student files: Debian's unar and lsar (`.rar`
entries, intake.py) and poppler's pdftoppm (a PDF write-up's thumbnail, attachments.py).

They parse files a student made, in C and Objective-C, in the grader's process tree; an exploit of
one must not run as root on the grader. Each run gets a scratch folder of its own, holding a copy of
its input (`in/`, read-only to the tool) and the one folder it may write (`out/`), and then, as far
as this machine allows:
- bubblewrap: own mount, pid, network, ipc and uts namespaces; read-only /usr and the few /etc
  files the tools read; the run's scratch folder is the only other thing mounted (not the
  submissions, the grader's output, the reference, the weights, $HOME), and nothing but loopback;
- setpriv: a private unprivileged uid, no groups, no capabilities, no new privileges. Not a user
  namespace: one made by root maps the tool to host uid 0, which could read root-only files;
- rlimits (always): file size, address space, CPU time, process count.
Without root (a student's self-check) only the rlimits apply: the tool then runs as that student
on their own file.
"""
from __future__ import annotations

import os
import resource
import shutil
import signal
import stat
import subprocess
import tempfile
from pathlib import Path

from .jail import _unused_uid, bubblewrap_works, bwrap_parent_dirs, bwrap_system_args, setpriv_command

TOOL_UIDS = range(160000, 170000)          # apart from the kernels' PRIVATE_UIDS: never shared
SCRATCH_PREFIX = "autograder-tool-"        # mkdtemp's random names in $TMPDIR: nobody else can pre-make one
INSIDE = Path("/job")                      # where bubblewrap shows the scratch folder
TOOL_MEMORY_BYTES = 2**30                   # address space: unar needs ~300 MiB, pdftoppm less
ETC_READ = ("fonts", "ld.so.cache", "localtime", "locale.alias", "GNUstep", "passwd", "group", "nsswitch.conf")
# fontconfig (pdftoppm); the loader; unar (GNUstep) stops without a user database to ask
# (world-readable, no password hashes: those are in shadow, which is not bound)


class ToolJail:
    """One tool run: `with ToolJail(input_path) as jail:` then `jail.popen([tool, ..., jail.input,
    jail.out])`; what the tool wrote is under `jail.out_dir` until the block ends.

    `file_bytes` bounds each file it writes (RLIMIT_FSIZE, stdout too), `memory_bytes` its address
    space, `cpu_seconds` its CPU time."""

    def __init__(self, source: Path, *, file_bytes: int, cpu_seconds: int, memory_bytes: int = TOOL_MEMORY_BYTES,
                 max_processes: int = 16):
        self.source = Path(source)
        root = os.geteuid() == 0
        self.use_bwrap = root and bubblewrap_works()
        self.private_uid = root and shutil.which("setpriv") is not None
        self.rlimits = {resource.RLIMIT_FSIZE: file_bytes, resource.RLIMIT_AS: memory_bytes,
                        resource.RLIMIT_CPU: cpu_seconds, resource.RLIMIT_CORE: 0}
        if self.private_uid:   # RLIMIT_NPROC counts every process of the uid: only a private one is ours
            self.rlimits[resource.RLIMIT_NPROC] = max_processes
        self.scratch: Path | None = None
        self.uid = 0

    # -- the scratch folder -------------------------------------------------------------------
    def __enter__(self) -> "ToolJail":
        self.scratch = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX))
        try:
            self._fill_scratch()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _fill_scratch(self) -> None:
        os.chmod(self.scratch, 0o755)          # mkdtemp's 0700 would shut the private uid out
        (self.scratch / "in").mkdir(mode=0o755)
        self.out_dir.mkdir(mode=0o755)
        # A copy, not the original: its folder may be closed to others, and the tool sees nothing
        # of the entry beside it. The name is ours, so no student's file name reaches a command line.
        suffix = "".join(c for c in self.source.suffix.lower() if c.isalnum())[:8]
        copy = self.scratch / "in" / f"input.{suffix or 'bin'}"
        shutil.copyfile(self.source, copy)
        os.chmod(copy, 0o644)
        if self.private_uid:
            self.uid = _unused_uid(Path(tempfile.gettempdir()), TOOL_UIDS, handed_over=f"{SCRATCH_PREFIX}*/out")
            os.chown(self.out_dir, self.uid, self.uid)

    @property
    def out_dir(self) -> Path:
        """The folder the tool writes, on the grader's side."""
        return self.scratch / "out"

    @property
    def input(self) -> str:
        """The input's path as the tool sees it."""
        return str(self._seen(next((self.scratch / "in").iterdir())))

    @property
    def out(self) -> str:
        """The output folder's path as the tool sees it."""
        return str(self._seen(self.out_dir))

    def _seen(self, path: Path) -> Path:
        return INSIDE / path.relative_to(self.scratch) if self.use_bwrap else path

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)

    # -- running --------------------------------------------------------------------------------
    def popen(self, command: list[str], *, stdout, stderr) -> subprocess.Popen:
        """Start `command` jailed; kill it with `kill()`. stdout/stderr: files opened by the grader."""
        return subprocess.Popen(self.wrap(command), stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                                cwd=self.out_dir, preexec_fn=self._limit, start_new_session=True)

    def run(self, command: list[str], *, stdout, stderr, timeout: float) -> int:
        """Run `command` jailed to its end or `timeout` (subprocess.TimeoutExpired, the tool killed)."""
        process = self.popen(command, stdout=stdout, stderr=stderr)
        try:
            return self.exit_status(process.wait(timeout=timeout))
        except subprocess.TimeoutExpired:
            self.kill(process)
            raise

    def exit_status(self, code: int) -> int:
        """The tool's exit status as subprocess gives it (-N: killed by signal N). bubblewrap passes
        a death by signal on as exit status 128 + N."""
        return -(code - 128) if self.use_bwrap and 128 < code < 160 else code

    @staticmethod
    def kill(process: subprocess.Popen) -> None:
        """The tool and all it started (its session; bubblewrap's pid namespace dies with it)."""
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        process.wait()

    def wrap(self, command: list[str]) -> list[str]:
        inner = list(command)
        if self.private_uid:
            inner = [*setpriv_command(self.uid), *inner]
        if self.use_bwrap:
            inner = [*self._bwrap_args(Path(shutil.which(command[0]) or command[0])), "--", *inner]
        return inner

    def _bwrap_args(self, tool: Path) -> list[str]:
        args = bwrap_system_args()
        args += ["--perms", "0755", "--dir", "/etc"]   # else bwrap makes it 0700, closed to the private uid
        for name in ETC_READ:
            args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
        tool = tool.resolve()
        if Path("/usr") not in tool.parents:   # a tool installed elsewhere (/opt, a TA's build): it alone
            args += [*bwrap_parent_dirs([tool]), "--ro-bind", str(tool), str(tool)]
        args += ["--ro-bind", str(self.scratch), str(INSIDE), "--bind", str(self.out_dir), str(INSIDE / "out"),
                 "--clearenv", "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", "/tmp",
                 "--setenv", "LANG", "C.UTF-8", "--chdir", str(INSIDE / "out")]
        return args

    def _limit(self) -> None:
        """In the child, before exec: inherited by bubblewrap, setpriv and the tool."""
        for which, value in self.rlimits.items():
            resource.setrlimit(which, (value, value))

    def output(self, name: str, max_bytes: int) -> bytes | None:
        """The bytes of a file the tool wrote in its output folder, if it is a plain file of its own
        (not a link, a fifo or a hard link to another file) of at most `max_bytes`; else None."""
        try:
            info = os.lstat(self.out_dir / name)
        except OSError:
            return None
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1 or info.st_size > max_bytes:
            return None
        return (self.out_dir / name).read_bytes()

    def hand_back(self) -> None:
        """Give what the tool wrote to the grader's uid, so nothing stays owned by the private uid."""
        if not self.private_uid:
            return
        for path in [self.out_dir, *self.out_dir.rglob("*")]:
            os.lchown(path, 0, 0)
