"""Runs INSIDE the notebook's kernel, after the student's last cell: the public checks' toolkit.

runner.py executes this file and then public/<assignment>.py in one fresh namespace (not the
student's), then calls `run_checks(student_namespace, context, out_path)`. A public check is a
function `(ns, ctx)` registered with `@check(task, what)`; it raises `CheckFailed` (through
`fail`) with a sentence for the student. `ctx` holds data_dir (the assignment's data folder),
scratch (a folder to write in), image_outputs (how many images the notebook showed) and answers
(the task ids of its `## Answer X` cells).
"""
import json
import math
import os
import traceback

CHECKS = []


class CheckFailed(Exception):
    """A public check failed; the message says what was expected and what was found."""


def check(task, what):
    def register(function):
        CHECKS.append((task, what, function))
        return function
    return register


def fail(message):
    raise CheckFailed(message)


def need(ns, name):
    """The student's top-level `name`, or a failure saying it is missing or still a TODO."""
    if name not in ns:
        fail(f"`{name}` is not defined: define it at the top level of the notebook (check its spelling)")
    value = ns[name]
    if value is None:
        fail(f"`{name}` is still None: its TODO is not done yet")
    return value


def describe(value):
    shape = getattr(value, "shape", None)
    if shape is not None:
        return f"a {type(value).__name__} of shape {tuple(shape)} and dtype {getattr(value, 'dtype', '?')}"
    if isinstance(value, (list, tuple, dict, set)):
        return f"a {type(value).__name__} of length {len(value)}"
    return f"{type(value).__name__} {str(value)[:60]!r}"


def as_array(value, what):
    """numpy view of a tensor, an array or a nested list of numbers."""
    import numpy as np
    try:
        import torch
        if isinstance(value, torch.Tensor):
            return value.detach().cpu().numpy()
    except ImportError:
        pass
    try:
        array = np.asarray(value)
    except Exception:  # noqa: BLE001 - ragged lists and odd objects
        fail(f"{what}: expected an array or a tensor, got {describe(value)}")
    if array.dtype.kind not in "biuf":
        fail(f"{what}: expected numbers, got {describe(value)}")
    return array


def tensor(value, what, shape=None, dtype=None):
    """A torch tensor of the given shape and dtype, or a failure saying what it is instead."""
    import torch
    if not isinstance(value, torch.Tensor):
        fail(f"{what}: expected a torch tensor, got {describe(value)}")
    if shape is not None and tuple(value.shape) != tuple(shape):
        fail(f"{what}: expected shape {tuple(shape)}, got {tuple(value.shape)}")
    if dtype is not None and value.dtype != dtype:
        fail(f"{what}: expected dtype {dtype}, got {value.dtype}")
    return value


def number(value, what):
    """A real number from a Python number, a 0-d array or a one-element tensor."""
    try:
        result = float(value)
    except (TypeError, ValueError):
        fail(f"{what}: expected a number, got {describe(value)}")
    if math.isnan(result):
        fail(f"{what} is NaN")
    return result


def fraction(value, what):
    result = number(value, what)
    if not 0.0 <= result <= 1.0:
        fail(f"{what}: expected a fraction between 0 and 1, got {result:g}")
    return result


def module(value, what):
    import torch
    if not isinstance(value, torch.nn.Module):
        fail(f"{what}: expected a torch.nn.Module, got {describe(value)}")
    return value


def parameters_count(model, trainable_only=False):
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def image_files(folder):
    return sorted(f for f in os.listdir(folder) if f.lower().endswith((".jpg", ".jpeg", ".png")))


def subfolders(folder):
    return sorted(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d)))


def _where(error):
    """'(in your cell, line 3)'-style hint: the last frame that is not this file's."""
    frames = [f for f in traceback.extract_tb(error.__traceback__) if "<selfcheck" not in f.filename]
    if not frames:
        return ""
    frame = frames[-1]
    return f" (raised at {os.path.basename(frame.filename)}, line {frame.lineno})"


def run_checks(ns, context, out_path):
    results = []
    for task, what, function in CHECKS:
        try:
            function(ns, context)
            results.append({"task": task, "check": what, "status": "passed", "message": ""})
        except CheckFailed as failure:
            results.append({"task": task, "check": what, "status": "failed", "message": str(failure)})
        except Exception as error:  # noqa: BLE001 - the student's code raised: say what and where
            message = f"{type(error).__name__}: {str(error)[:300]}{_where(error)}"
            results.append({"task": task, "check": what, "status": "failed", "message": message})
    with open(out_path, "w", encoding="utf-8") as handle:
        json.dump(results, handle)
