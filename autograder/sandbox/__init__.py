"""The sandbox room: where student code runs (jail.py), and the system tools that read student files
(unar, pdftoppm: tools.py), and the fork server that starts a batch
worker's kernels with torch already imported (forkserver.py, zygote.py)."""
from .forkserver import ForkFailed, ForkServer
from .jail import Sandbox, bubblewrap_works, forks_kernels, kernel_environment, kernels_see_the_file_tree, \
    remove_left_behind
from .limits import Defences, Limits, GiB, MiB

__all__ = ["Sandbox", "ForkServer", "ForkFailed", "forks_kernels", "kernel_environment", "Limits", "Defences", "bubblewrap_works", "kernels_see_the_file_tree", "remove_left_behind", "GiB", "MiB"]
