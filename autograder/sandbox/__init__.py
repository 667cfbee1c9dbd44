"""The sandbox room: where student code runs, and nothing else does."""
from .jail import Sandbox, bubblewrap_works, remove_left_behind
from .limits import Defences, Limits, GiB, MiB

__all__ = ["Sandbox", "Limits", "Defences", "bubblewrap_works", "remove_left_behind", "GiB", "MiB"]
