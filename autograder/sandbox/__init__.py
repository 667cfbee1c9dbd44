"""The sandbox room: where student code runs (jail.py), and the system tools that read student files
(unar, pdftoppm: tools.py)."""
from .jail import Sandbox, bubblewrap_works, kernels_see_the_file_tree, remove_left_behind
from .limits import Defences, Limits, GiB, MiB

__all__ = ["Sandbox", "Limits", "Defences", "bubblewrap_works", "kernels_see_the_file_tree", "remove_left_behind", "GiB", "MiB"]
