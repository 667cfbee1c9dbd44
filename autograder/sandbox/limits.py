"""Resource limits of one sandboxed run, and the record of which defences were really active."""
from __future__ import annotations

from dataclasses import dataclass, field, asdict

GiB = 1024**3
MiB = 1024**2


@dataclass(frozen=True)
class Limits:
    """What one submission may use. Defaults suit the fruits notebook on a 2-core CPU machine."""

    cell_timeout_s: float = 300.0        # wall time of one cell
    total_timeout_s: float = 900.0       # wall time of the whole submission, harvest included
    cpu_seconds: int = 1800              # RLIMIT_CPU of the kernel (all its threads together)
    # RLIMIT_DATA, not RLIMIT_AS: the CUDA build of torch reserves ~3.3 GB of address space
    # at import, so an address-space limit breaks `import torch` (MACHINE-FACTS.md).
    memory_bytes: int = 4 * GiB
    max_processes: int = 128             # pids cgroup and RLIMIT_NPROC (threads count too)
    max_file_bytes: int = 512 * MiB      # RLIMIT_FSIZE: the largest file the student may write
    max_disk_bytes: int = 1 * GiB        # the sandbox folder's own tmpfs: all files together
    max_open_files: int = 1024
    max_output_bytes: int = 2 * MiB      # cell outputs kept for the report, per submission
    threads: int = 1                     # OMP/torch threads inside the kernel

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Defences:
    """Which isolation measures a run actually got; every report shows this list."""

    active: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def have(self, what: str) -> None:
        self.active.append(what)

    def lack(self, what: str, why: str) -> None:
        self.missing.append(f"{what} ({why})")

    def to_dict(self) -> dict:
        return {"active": list(self.active), "missing": list(self.missing)}
