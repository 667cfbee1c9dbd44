"""Exec wrapper that puts the kernel under its limits before it starts.

Run as ``python -m autograder.sandbox.launch SPEC_JSON -- COMMAND...`` by the kernel manager.
It joins the run's cgroups, sets the rlimits (inherited across exec by bubblewrap, setpriv and
the kernel), starts a new session so the run can be killed as a group, then execs COMMAND.
It imports nothing heavy: it sits on the start-up path of every kernel.
"""
from __future__ import annotations

import json
import os
import resource
import sys

_RLIMITS = {
    "cpu_seconds": resource.RLIMIT_CPU,
    "memory_bytes": resource.RLIMIT_DATA,
    "max_processes": resource.RLIMIT_NPROC,
    "max_file_bytes": resource.RLIMIT_FSIZE,
    "max_open_files": resource.RLIMIT_NOFILE,
}


def apply(spec: dict) -> None:
    for cgroup_dir in spec.get("cgroups", []):
        with open(os.path.join(cgroup_dir, "cgroup.procs"), "w") as procs:
            procs.write(str(os.getpid()))
    set_rlimits(spec.get("rlimits", {}))
    try:
        os.setsid()
    except OSError:
        pass  # already a session leader


def set_rlimits(rlimits: dict) -> None:
    """The spec's rlimits (never above a hard limit already set), and no core dumps. Also used by
    a kernel forked from the fork server (zygote.py)."""
    for name, which in _RLIMITS.items():
        value = rlimits.get(name)
        if value is not None:
            value = int(value)
            ceiling = int(rlimits.get("memory_hard_bytes") or value) if name == "memory_bytes" else value
            _soft, hard = resource.getrlimit(which)
            if hard != resource.RLIM_INFINITY:
                value, ceiling = min(value, hard), min(ceiling, hard)
            resource.setrlimit(which, (value, max(value, ceiling)))
    # No core dumps of student processes in the sandbox folder.
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def main(argv: list[str]) -> None:
    if len(argv) < 3 or argv[1] != "--":
        sys.exit("usage: python -m autograder.sandbox.launch SPEC_JSON -- COMMAND...")
    apply(json.loads(argv[0]))
    command = argv[2:]
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
