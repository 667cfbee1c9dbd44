"""The graders' vocabulary: checks that fail with a message a student can act on.

Each check says what was expected and what the submission produced: type, shape, dtype, the
largest difference and where it is. Values reaching here are plain data decoded from the safe
export (numpy arrays, Python numbers, strings, lists, tuples, dicts), never student objects.
"""
from __future__ import annotations

import numpy as np

from .artefacts import ForeignObject, NotCollected


class GradeFailure(AssertionError):
    """A check failed; the message is shown to the student as it is."""


def fail(message: str):
    raise GradeFailure(message)


def collect(artefacts, name: str):
    """The value, or a failure saying why it could not be collected."""
    try:
        return artefacts.get(name)
    except NotCollected as missing:
        fail(str(missing))


def describe(value) -> str:
    if isinstance(value, np.ndarray):
        return f"an array of shape {tuple(value.shape)} and dtype {value.dtype}"
    if isinstance(value, ForeignObject):
        return f"an object of type {value.type_name}"
    if isinstance(value, (list, tuple, dict)):
        return f"a {type(value).__name__} of {len(value)} items"
    return f"{type(value).__name__} {value!r}"[:200]


def array(value, what: str, *, ndim: int | None = None) -> np.ndarray:
    """A numeric array (a tensor or ndarray in the submission; numbers and lists are accepted)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = np.asarray(value, dtype=np.float64)
    elif isinstance(value, (list, tuple)):
        try:
            value = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            fail(f"{what}: expected numbers, got {describe(value)}")
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "biuf":
        fail(f"{what}: expected a tensor or array of numbers, got {describe(value)}")
    if ndim is not None and value.ndim != ndim:
        fail(f"{what}: expected {ndim} dimensions, got shape {tuple(value.shape)}")
    return value


def number(value, what: str) -> float:
    """A real number: a float, an int, a 0-d or one-element array."""
    if isinstance(value, bool):
        fail(f"{what}: expected a number, got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, np.ndarray) and value.size == 1 and value.dtype.kind in "iuf":
        return float(value.reshape(()))
    fail(f"{what}: expected a number, got {describe(value)}")


def same_shape(got: np.ndarray, shape: tuple, what: str) -> None:
    if tuple(got.shape) != tuple(shape):
        fail(f"{what}: expected shape {tuple(shape)}, got {tuple(got.shape)}")


def close(got: np.ndarray, expected: np.ndarray, what: str, *, atol: float = 0.0, rtol: float = 0.0,
          mean_atol: float | None = None) -> None:
    """Element-wise |got - expected| <= atol + rtol * max|expected|, optionally a mean bound too."""
    got, expected = np.asarray(got, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    same_shape(got, expected.shape, what)
    if not np.all(np.isfinite(got)):
        bad = np.argwhere(~np.isfinite(got))[0]
        fail(f"{what}: contains NaN or infinity (first at index {tuple(int(i) for i in bad)})")
    if got.size == 0:
        return
    difference = np.abs(got - expected)
    bound = atol + rtol * float(np.max(np.abs(expected)))
    where = np.unravel_index(int(np.argmax(difference)), difference.shape)
    largest = float(difference[where])
    if largest > bound:
        fail(f"{what}: largest difference from the expected values is {largest:.4g} at index "
             f"{tuple(int(i) for i in where)} (expected {float(expected[where]):.5g}, got {float(got[where]):.5g}; "
             f"allowed {bound:.2g})")
    if mean_atol is not None and float(difference.mean()) > mean_atol:
        fail(f"{what}: mean difference from the expected values is {float(difference.mean()):.4g} "
             f"(allowed {mean_atol:.2g})")


def is_close(got, expected, **tolerances) -> bool:
    try:
        close(got, expected, "value", **tolerances)
        return True
    except GradeFailure:
        return False


def feature_dict(value, what: str, *, keys: list[int], dim: int) -> dict[int, np.ndarray]:
    """A dict class index -> feature vector of `dim` values (a (1, dim) tensor is accepted)."""
    if not isinstance(value, dict):
        fail(f"{what}: expected a dict class index -> feature, got {describe(value)}")
    converted = {}
    for key, feature in value.items():
        if isinstance(key, bool) or not isinstance(key, (int, float)) or int(key) != key:
            fail(f"{what}: keys must be class indices (int), found key {key!r}")
        feature = array(feature, f"{what}[{int(key)}]")
        if feature.dtype.kind != "f":
            fail(f"{what}[{int(key)}]: expected float features, got dtype {feature.dtype}")
        if feature.size != dim or feature.squeeze().ndim > 1:
            fail(f"{what}[{int(key)}]: expected a ({dim},) feature vector, got shape {tuple(feature.shape)}")
        converted[int(key)] = feature.reshape(dim)
    if sorted(converted) != sorted(keys):
        fail(f"{what}: expected keys {sorted(keys)}, got {sorted(converted)}")
    return converted


def names_pair(value, what: str) -> tuple[str, str]:
    if not isinstance(value, (list, tuple)) or len(value) != 2 or not all(isinstance(v, str) for v in value):
        fail(f"{what}: expected a pair of class names, got {describe(value)}")
    return str(value[0]), str(value[1])
