"""The fork server's own process: imports torch & co. once, then forks one jailed kernel per request.

Run by `forkserver.ForkServer` as ``python -P zygote.py SOCKET_FD PRELOAD_JSON`` with the kernels'
environment (nothing of the grader's). It holds nothing but imported libraries: no grader module,
no reference value, no submission ever runs in it. For each request it forks a *middle* process,
which enters the sandbox that bubblewrap built around a waiting *holder* process:

    zygote (root, host)  --fork-->  middle: joins the run's cgroups, setns() into the holder's
                                    mount/pid/net/ipc/uts/cgroup namespaces, chroot to its root
                                    --fork-->  kernel (pid namespace member): new session,
                                               rlimits, fds 0-2 only, no groups, the private uid,
                                               no capabilities (bounding set too), no new privileges;
                                               checked in /proc/self/status, else it exits;
                                               then ipykernel_launcher, in this same interpreter.
The middle waits for the kernel and writes its end ("exit N" / "signal N") to the holder's pipe;
the holder exits the same way, so the process jupyter_client watches (launcher -> bubblewrap ->
holder) ends exactly as a directly started kernel would. bubblewrap still builds every mount; this
file only joins what it built and drops privileges the way setpriv does.

It imports only the standard library before the preload, and nothing of the autograder package.
"""
from __future__ import annotations

import ctypes
import json
import os
import runpy
import signal
import socket
import sys

# setns(2) namespace flags (linux/sched.h); os.setns exists only from Python 3.12.
CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS = 0x00020000, 0x02000000, 0x04000000
CLONE_NEWIPC, CLONE_NEWPID, CLONE_NEWNET = 0x08000000, 0x20000000, 0x40000000
SANDBOX_NAMESPACES = CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWPID | CLONE_NEWNET
PR_SET_DUMPABLE, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 4, 24, 38
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
JAILED_EXIT = 70      # the kernel could not be jailed (its set-up failed): it never ran a line of ipykernel

_libc = ctypes.CDLL(None, use_errno=True)
# launch.py's rlimits, read without importing it: nothing of the autograder package is in sys.modules,
# which every forked kernel inherits.
_set_rlimits = runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "launch.py"))["set_rlimits"]


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


# -- the zygote's loop ---------------------------------------------------------------------------
def serve(channel: socket.socket) -> None:
    """Answer fork requests until the grader closes its end. One request: a JSON line and four
    descriptors (holder pidfd, holder root, kernel log, holder's status pipe)."""
    signal.signal(signal.SIGCHLD, lambda *_: _reap())
    while True:
        try:
            message, fds, _flags, _addr = socket.recv_fds(channel, 1 << 16, 8)
        except InterruptedError:
            continue
        if not message:
            return          # the grader is gone: so are we (our kernels live on in their sandboxes)
        try:
            reply = _fork_kernel(json.loads(message), fds)
        except Exception as error:  # noqa: BLE001 - any failure is the grader's to hear about
            reply = {"error": f"{type(error).__name__}: {error}"}
        finally:
            for fd in fds:
                os.close(fd)
        channel.sendall(json.dumps(reply).encode() + b"\n")


def _reap() -> None:
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _fork_kernel(request: dict, fds: list[int]) -> dict:
    """Fork the middle, and wait until its kernel says it is jailed (or why it is not)."""
    if len(fds) != 4:
        raise ValueError(f"expected 4 descriptors, got {len(fds)}")
    ready_read, ready_write = os.pipe()
    middle = os.fork()
    if middle == 0:
        os.close(ready_read)
        _run_middle(request, fds, ready_write)   # never returns
    os.close(ready_write)
    with os.fdopen(ready_read, "rb") as ready:
        said = ready.read(4096).decode(errors="replace")   # EOF once the kernel is jailed, or died
    if said != "jailed":
        return {"error": said or "the kernel's set-up ended without a word"}
    return {"pid": middle}


# -- the middle: enter the sandbox, fork the kernel, report its end ------------------------------
def _run_middle(request: dict, fds: list[int], ready: int) -> None:
    holder, holder_root, log, status = fds
    code = JAILED_EXIT
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        homes = _home_cgroups(request["cgroups"])   # opened before setns: the sandbox has no /sys
        for group in request["cgroups"]:
            with open(os.path.join(group, "cgroup.procs"), "w") as procs:
                procs.write(str(os.getpid()))
        _check(_libc.setns(holder, SANDBOX_NAMESPACES), "setns")
        os.fchdir(holder_root)
        os.chroot(".")
        os.chdir(request["cwd"])
        kernel = os.fork()            # the first child after setns(CLONE_NEWPID) is in the pid namespace
        if kernel == 0:
            _run_kernel(request, log, ready)   # never returns
        # The kernel was born in the sandbox's cgroups; the middle leaves them, so that the end of
        # the run (which kills whatever is in them) leaves it alive to reap the kernel at once.
        for home in homes:
            try:
                os.write(home, str(os.getpid()).encode())
            except OSError:
                pass
        _close_all_but(status)
        _pid, wait_status = os.waitpid(kernel, 0)
        end = (f"signal {os.WTERMSIG(wait_status)}" if os.WIFSIGNALED(wait_status)
               else f"exit {os.waitstatus_to_exitcode(wait_status)}")
        os.write(status, end.encode())
        code = 0
    except BaseException as error:  # noqa: BLE001
        _say(ready, f"entering the sandbox failed: {type(error).__name__}: {error}")
    finally:
        os._exit(code)


def _home_cgroups(groups: list[str]) -> list[int]:
    """Descriptors of this process's own cgroup.procs in the hierarchies of the sandbox's `groups`
    (each made at the top of its hierarchy: /sys/fs/cgroup/NAME or /sys/fs/cgroup/CONTROLLER/NAME)."""
    mine = {}
    for line in open("/proc/self/cgroup").read().splitlines():
        _number, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            mine[controller] = path
    homes = []
    for group in groups:
        hierarchy = os.path.dirname(group)
        controller = "" if os.path.exists(os.path.join(hierarchy, "cgroup.controllers")) else os.path.basename(hierarchy)
        if controller in mine:
            try:
                homes.append(os.open(os.path.join(hierarchy, mine[controller].lstrip("/"), "cgroup.procs"), os.O_WRONLY))
            except OSError:
                pass
    return homes


def _close_all_but(keep: int) -> None:
    """Close every descriptor above 2 except `keep` (the zygote's included: its soft limit may be low)."""
    os.closerange(3, keep)
    os.closerange(keep + 1, 1 << 20)


def _say(fd: int, text: str) -> None:
    try:
        os.write(fd, text.encode()[:4000])
    except OSError:
        pass


# -- the kernel: jail itself, then become ipykernel -------------------------------------------------
def _run_kernel(request: dict, log: int, ready: int) -> None:
    try:
        os.setsid()
        null = os.open("/dev/null", os.O_RDWR)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        _close_all_but(ready)         # the zygote's channel, the holder's descriptors, the log's copy
        _set_rlimits(request["rlimits"])     # launch.py's, as an exec'd kernel gets them
        _drop_privileges(int(request["uid"]))
        _check_jailed(int(request["uid"]))
        _become_fresh(request["env"])
    except BaseException as error:  # noqa: BLE001
        _say(ready, f"jailing the kernel failed: {type(error).__name__}: {error}")
        os._exit(JAILED_EXIT)
    os.write(ready, b"jailed")
    os.close(ready)
    code = 0
    try:
        sys.argv = ["ipykernel_launcher", *request["argv"]]
        runpy.run_module("ipykernel_launcher", run_name="__main__", alter_sys=True)
    except SystemExit as end:
        code = end.code if isinstance(end.code, int) else (0 if end.code is None else 1)
    except BaseException:  # noqa: BLE001 - printed to the kernel log, as an uncaught error would be
        import traceback
        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _drop_privileges(uid: int) -> None:
    """setpriv --reuid --regid --clear-groups --no-new-privs --inh-caps=-all --bounding-set=-all."""
    last_cap = int(open("/proc/sys/kernel/cap_last_cap").read())
    for cap in range(last_cap + 1):
        _check(_libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), f"dropping capability {cap} from the bounding set")
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)       # clears the permitted and effective sets (no keep-caps)
    header = (ctypes.c_uint32 * 2)(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()    # two {effective, permitted, inheritable}: all empty
    _check(_libc.capset(header, data), "capset")
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    # As after setpriv's exec: /proc/self belongs to the kernel's uid (setuid made it root's).
    _check(_libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0), "dumpable")


def _check_jailed(uid: int) -> None:
    """Read back what the kernel now is; anything short of the jail stops it before ipykernel."""
    status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line)
    ids = status["Uid"].split() + status["Gid"].split()
    problems = [f"ids {ids}"] if any(int(i) != uid for i in ids) else []
    problems += [f"{key} {status[key].strip()}" for key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")
                 if int(status[key], 16) != 0]
    if status["Groups"].strip():
        problems.append(f"groups {status['Groups'].strip()}")
    if status["NoNewPrivs"].strip() != "1":
        problems.append("no_new_privs unset")
    if problems:
        raise PermissionError("not jailed: " + ", ".join(problems))


def _become_fresh(env: dict) -> None:
    """What a new interpreter would have: the kernel's environment, fresh random state."""
    os.environ.clear()
    os.environ.update(env)
    import tempfile
    tempfile.tempdir = None          # from TMPDIR again, not the zygote's
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed()          # the global state was seeded once, in the zygote
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)


# -- start-up ------------------------------------------------------------------------------------
def main(argv: list[str]) -> None:
    channel = socket.socket(fileno=int(argv[0]))
    for module in json.loads(argv[1]):
        try:
            __import__(module)
        except Exception as error:  # noqa: BLE001 - a kernel imports it again and shows the error
            print(f"zygote: could not preload {module}: {error}", file=sys.stderr)
    print("ready", flush=True)
    serve(channel)
    # Nothing to tear down (the kernels live on in their sandboxes), and an interpreter that has
    # imported torch takes most of a second to shut down: a worker's close would wait for it.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
