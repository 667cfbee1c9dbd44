"""Runs INSIDE the sandbox kernel (sent as source text, after the student's cells).

Turns the student's values into safe files: a JSON manifest whose arrays live in `.npy` files
written without pickle. Only plain data crosses the sandbox wall; no object of the student's is
ever unpickled by the grader. Every value is recorded as ok, missing or error, with the reason.
Only the standard library, numpy and (if present) torch are used.
"""
import json as _json
import math as _math
import os as _os
import sys as _sys
import traceback as _traceback

import numpy as _np

_MAX_DEPTH = 6
_MAX_ITEMS = 20000
_MAX_ARRAY_BYTES = 256 * 1024 * 1024
ON_REQUEST = "on request"   # offered for the harvest's second step and not asked for (yet)


class _Missing(Exception):
    pass


class Exporter:
    """Collects named values into out_dir/manifest.json plus out_dir/aNNN.npy files."""

    def __init__(self, out_dir):
        self.out_dir = out_dir
        self.entries = {}
        self._arrays = 0
        self._array_bytes = 0
        self._items = 0
        self._offered = {}

    # -- public: used by each assignment's harvest code --------------------------------------
    def value(self, name, compute):
        """Record compute() under `name`; a NameError/KeyError of a top-level name means missing."""
        try:
            value = compute()
        except _Missing as missing:
            self.entries[name] = {"status": "missing", "message": str(missing)}
            return None
        except BaseException as error:  # noqa: BLE001 - the student's code may raise anything
            if isinstance(error, (KeyboardInterrupt, SystemExit)):
                message = f"{type(error).__name__} while computing this value"
            else:
                message = _describe(error)
            self.entries[name] = {"status": "error", "message": message}
            return None
        try:
            self._items = 0
            self.entries[name] = {"status": "ok", "value": self._encode(value, 0)}
        except BaseException as error:  # noqa: BLE001
            self.entries[name] = {"status": "error", "message": "could not export: " + _describe(error)}
        return value

    def on_request(self, name, compute):
        """Offer `name` for the harvest's second step: compute() runs only if the graders ask for it
        after comparing the first step's values with the reference (autograder/execution.py). For
        costly values needed only sometimes, such as the student's own upstream re-run where their
        value is not the reference's."""
        self._offered[name] = compute
        self.entries[name] = {"status": ON_REQUEST,
                              "message": f"`{name}` is computed only when the graders need it, and was not"}

    def answer(self, names):
        """The second step: compute the offered values named, drop the rest. The manifest is written
        again after each, so a value that kills the kernel costs only itself and those after it."""
        offered, self._offered = self._offered, {}
        for name in names:
            if name in offered:
                self.value(name, offered[name])
                self.write()

    def write(self):
        """Write the manifest (replacing it whole: a kernel killed meanwhile leaves the last one)."""
        path = _os.path.join(self.out_dir, "manifest.json")
        with open(path + ".part", "w", encoding="utf-8") as handle:
            _json.dump({"format": 1, "entries": self.entries}, handle, allow_nan=False)
        _os.replace(path + ".part", path)

    # -- encoding -----------------------------------------------------------------------------
    def _encode(self, value, depth):
        self._items += 1
        if self._items > _MAX_ITEMS:
            raise ValueError(f"more than {_MAX_ITEMS} items")
        if depth > _MAX_DEPTH:
            raise ValueError(f"nested deeper than {_MAX_DEPTH} levels")
        if value is None or type(value) in (bool, int, str):
            if type(value) is int and abs(value) > 2**53:
                return {"__int__": str(value)}
            if type(value) is str and len(value) > 100000:
                raise ValueError("string longer than 100000 characters")
            return value
        if type(value) is float or isinstance(value, _np.floating):
            value = float(value)
            return value if _math.isfinite(value) else {"__float__": repr(value)}
        if isinstance(value, (_np.integer, _np.bool_)):
            return value.item()
        array = _as_array(value)
        if array is not None:
            return self._save_array(array, _is_tensor(value))
        if isinstance(value, (list, tuple)):
            key = "__tuple__" if isinstance(value, tuple) else "__list__"
            return {key: [self._encode(v, depth + 1) for v in value]}
        if isinstance(value, dict):
            return {"__dict__": [[self._encode(k, depth + 1), self._encode(v, depth + 1)]
                                 for k, v in value.items()]}
        return {"__object__": type(value).__module__ + "." + type(value).__qualname__,
                "repr": _short_repr(value)}

    def _save_array(self, array, was_tensor):
        if array.dtype.kind not in "biufc":
            raise ValueError(f"array of dtype {array.dtype} cannot be exported")
        self._array_bytes += array.nbytes
        if self._array_bytes > _MAX_ARRAY_BYTES:
            raise ValueError("exported arrays exceed 256 MiB")
        name = f"a{self._arrays:04d}.npy"
        self._arrays += 1
        # ascontiguousarray makes a 0-d array 1-d: keep the shape the manifest records.
        _np.save(_os.path.join(self.out_dir, name), _np.ascontiguousarray(array).reshape(array.shape),
                 allow_pickle=False)
        return {"__array__": name, "dtype": str(array.dtype), "shape": list(array.shape),
                "tensor": was_tensor}


def _is_tensor(value):
    torch = _sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def _as_array(value):
    """A numpy copy of a tensor or an array (its real data, whatever its class claims)."""
    if _is_tensor(value):
        import torch
        tensor = torch.Tensor.detach(value)
        if tensor.dtype == torch.bfloat16:
            tensor = tensor.float()
        return _np.array(torch.Tensor.numpy(torch.Tensor.cpu(tensor.as_subclass(torch.Tensor))))
    if isinstance(value, _np.ndarray):
        return _np.array(value.view(_np.ndarray))
    return None


def _short_repr(value):
    try:
        text = repr(value)
    except BaseException:  # noqa: BLE001
        text = "<unrepresentable>"
    return text[:300]


def _describe(error):
    """The exception's last line and the last frame of the student's code that raised it."""
    lines = _traceback.format_exception_only(type(error), error)
    frames = [f for f in _traceback.extract_tb(error.__traceback__)]
    # Point at the student's own code (a notebook cell or their module), not at torch's internals.
    own = [f for f in frames if "ipykernel_" in f.filename or f.filename.startswith("<ipython")
           or ("/lib/python3" not in f.filename and not f.filename.startswith("<autograder"))]
    frames = own or frames
    where = ""
    if frames:
        frame = frames[-1]
        where = f" (in {frame.name}, line {frame.lineno}: {(frame.line or '').strip()[:120]})"
    return (lines[-1].strip()[:500] + where)


def require(namespace, name):
    """The student's top-level `name`, or a clear 'missing' record."""
    if name not in namespace:
        raise _Missing(f"`{name}` is not defined at the top level of the submission")
    return namespace[name]
