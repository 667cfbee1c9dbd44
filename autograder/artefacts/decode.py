"""Grader side: read what the harvest exported, trusting nothing about it.

The manifest is JSON (size-capped); arrays are `.npy` read with allow_pickle=False, their names,
dtypes and shapes checked against the manifest. Values come back as plain Python and numpy data:
no student class, no pickle, no lying `__eq__`.
"""
from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import numpy as np

MAX_MANIFEST_BYTES = 16 * 1024 * 1024
MAX_TOTAL_BYTES = 512 * 1024 * 1024
_ARRAY_NAME = re.compile(r"^a\d{4}\.npy$")


class NotCollected(Exception):
    """The value could not be collected from the submission; the message says why."""


def copy_out(export_dir: Path, target: Path) -> list[str]:
    """Copy the export out of the sandbox: plain files with expected names only, bounded in size.

    The folder and its files belong to the student's uid, and a student process may still run
    (between the harvest's two steps, the kernel itself): a file or the folder may be swapped for a
    link (to the reference's cache, say) or a fifo while we look. So the folder is opened without
    following a link, each file relative to it without following links or blocking, and a file is
    copied only if what was opened is a regular file."""
    problems: list[str] = []
    target.mkdir(parents=True, exist_ok=True)
    try:
        folder = os.open(export_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return problems
    except OSError:
        return ["ignored the export folder: not a plain folder"]
    try:
        budget = MAX_TOTAL_BYTES
        for name in sorted(os.listdir(folder)):
            if name != "manifest.json" and not _ARRAY_NAME.fullmatch(name):
                problems.append(f"ignored {name}: not an export file")
                continue
            budget = _copy_plain_file(folder, name, target / name, budget, problems)
            if budget < 0:
                problems.append("export larger than 512 MiB: the rest was ignored")
                break
    finally:
        os.close(folder)
    return problems


def _copy_plain_file(folder: int, name: str, copy: Path, budget: int, problems: list[str]) -> int:
    """Copy `name` of the open `folder` if it is a regular file; returns the budget left (< 0: over)."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=folder)
    except OSError:
        problems.append(f"ignored {name}: not a plain file")
        return budget
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        problems.append(f"ignored {name}: not a plain file")
        return budget
    with os.fdopen(fd, "rb") as source:
        with open(copy, "wb") as sink:
            while budget >= 0 and (chunk := source.read(min(2**20, budget + 1))):
                sink.write(chunk)
                budget -= len(chunk)
    if budget < 0:
        copy.unlink()
    return budget


class Artefacts:
    """The student's exported values, decoded on demand."""

    def __init__(self, folder: Path | None, unavailable_reason: str = ""):
        self.folder = Path(folder) if folder else None
        self.entries: dict = {}
        self.reason = unavailable_reason
        manifest = self.folder / "manifest.json" if self.folder else None
        if manifest is not None and manifest.is_file():
            if manifest.stat().st_size > MAX_MANIFEST_BYTES:
                self.reason = "the exported manifest is too large"
            else:
                try:
                    data = json.loads(manifest.read_text(encoding="utf-8"))
                    self.entries = dict(data.get("entries", {}))
                except (ValueError, AttributeError) as error:
                    self.reason = f"the exported manifest is not valid JSON ({error})"
        elif not self.reason:
            self.reason = "nothing was exported (the harvest did not run)"

    def status(self, name: str) -> str:
        entry = self.entries.get(name)
        return entry.get("status", "error") if isinstance(entry, dict) else "missing"

    def get(self, name: str):
        """The decoded value, or NotCollected with the reason shown to the student."""
        entry = self.entries.get(name)
        if not isinstance(entry, dict):
            raise NotCollected(f"`{name}` could not be collected: {self.reason or 'it was not exported'}")
        if entry.get("status") != "ok":
            raise NotCollected(str(entry.get("message", "unknown error"))[:2000])
        try:
            return self._decode(entry.get("value"), 0)
        except (ValueError, TypeError, KeyError, OSError) as error:
            raise NotCollected(f"`{name}` was exported in a form the grader cannot read ({error})")

    def _decode(self, node, depth: int):
        if depth > 16:
            raise ValueError("nested too deeply")
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        if isinstance(node, list):
            raise ValueError("bare JSON list")
        if not isinstance(node, dict):
            raise ValueError(f"unexpected {type(node).__name__}")
        if "__array__" in node:
            return self._load_array(node)
        if "__list__" in node:
            return [self._decode(v, depth + 1) for v in node["__list__"]]
        if "__tuple__" in node:
            return tuple(self._decode(v, depth + 1) for v in node["__tuple__"])
        if "__dict__" in node:
            out = {}
            for pair in node["__dict__"]:
                key, value = pair
                key = self._decode(key, depth + 1)
                if isinstance(key, np.ndarray):
                    key = key.item() if key.size == 1 else tuple(key.tolist())
                out[key] = self._decode(value, depth + 1)
            return out
        if "__float__" in node:
            return float(node["__float__"])
        if "__int__" in node:
            return int(node["__int__"])
        if "__object__" in node:
            return ForeignObject(str(node["__object__"]), str(node.get("repr", "")))
        raise ValueError("unknown node")

    def _load_array(self, node: dict) -> np.ndarray:
        name = str(node["__array__"])
        if not _ARRAY_NAME.fullmatch(name) or self.folder is None:
            raise ValueError(f"bad array file name {name!r}")
        # read_array, not np.load: np.load would open a zip (npz) under a .npy name.
        with open(self.folder / name, "rb") as handle:
            array = np.lib.format.read_array(handle, allow_pickle=False)
        if list(array.shape) != list(node.get("shape", [])) or str(array.dtype) != node.get("dtype"):
            raise ValueError(f"array {name} does not match its manifest entry")
        return array


class ForeignObject:
    """Stands for a student object that is not plain data: only its type name and repr travel."""

    def __init__(self, type_name: str, text: str):
        self.type_name, self.text = type_name, text

    def __repr__(self) -> str:
        return f"<{self.type_name}: {self.text[:80]}>"
