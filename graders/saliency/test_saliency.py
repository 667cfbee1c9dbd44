"""saliency: image-class saliency maps (VGG16). One test per graded task; M3 is marked by a TA.

Fixtures (autograder/grading.py): `student` and `reference` are the exported values (same names,
plain data); `run` is the execution record; `figures` collects pictures for the report.

Tolerances, and why:
- A map agrees with the reference when (a) its mean absolute difference is at most 0.5% of the
  reference map's maximum and (b) at most 1% of its pixels differ by more than 5% of that maximum.
  Not an element-wise 1e-4: a saliency map is a gradient of a ReLU/max-pool network, piecewise
  constant in the input, and measured on the VGG16 stand-in a float-level change of the computation
  (another convolution algorithm: channels-last memory, oneDNN off) moves up to 16% of the pixels
  by more than 1e-4 of the maximum and a few by 5-12%, though the mean moves by only 2e-4-5e-4;
  transforms v2 instead of v1 on the same PIL image (inputs within 1e-6) behaves the same way
  (mean 1e-4, 0.2% of the pixels beyond 1%). Every wrong map measured is off by 5% of the maximum
  on average or more: softmax probability instead of the score (1000x too small), sum or mean over
  channels, another target, dropout on (train mode), another resize, crop or normalisation.
- M2 needs the handout's preprocessing exactly (the template's `load_image`): with the stand-in
  weights even resizing the tensor instead of the PIL image changes the map by 6% on average.
- Inputs must be left bit-identical; the model's parameter and buffer values are compared by a
  checksum of each, its requires_grad flags and the train/eval flag of every module one by one.
No double penalty: M2 also accepts maps that agree with the student's own compute_saliency applied
by the harness to the handout's inputs with the grader's VGG16 (a wrong compute_saliency costs M1 only).
"""
import numpy as np
import pytest

from autograder.checks import GradeFailure, array, collect, describe, fail

MEAN_TOL = 5e-3        # mean |yours - reference|, as a fraction of max |reference|
PIXEL_TOL = 5e-2       # a pixel is off when |yours - reference| > PIXEL_TOL * max |reference|
OFF_FRACTION = 0.01    # the fraction of pixels that may be off
MAX_PROBLEMS_SHOWN = 6


@pytest.mark.task("M1", visibility="after_published")
def test_compute_saliency(student, reference):
    """M1 compute_saliency(model, image, target=None) on unseen images, sizes, targets and models; model and image left unchanged"""
    cases = reference.get("M1:cases")
    if not any(student.status(f"M1:{case['name']}") == "ok" for case in cases):
        first = cases[0]["name"]
        try:  # no call gave a value: say why, once
            collect(student, f"M1:{first}")
        except GradeFailure as problem:
            what = _call(cases[0], reference.get(f"M1:{first}:input").shape, reference.get(f"M1:{first}:top"))
            reason = str(problem).removeprefix(f"`M1:{first}` could not be collected: ")
            fail(f"{what}: {reason}")
    problems = []                            # (call, what went wrong)
    for case in cases:
        name = case["name"]
        image = reference.get(f"M1:{name}:input")
        what = _call(case, image.shape, reference.get(f"M1:{name}:top"))
        expected = reference.get(f"M1:{name}")
        try:
            got = array(collect(student, f"M1:{name}"), what)
            if tuple(got.shape) != tuple(expected.shape):
                fail(f"{what}: expected an H x W map of shape {tuple(expected.shape)}, got shape {tuple(got.shape)}")
            _check_map(got, expected, what, nonnegative=True)
        except GradeFailure as problem:
            problems.append(_split(what, str(problem)))
        try:
            after = array(collect(student, f"M1:{name}:input_after"), f"{what}: the image tensor after the call")
            if after.shape != image.shape or not np.array_equal(after, image):
                problems.append((what, "modified the image tensor it was given (it must be left unchanged: "
                                 "work on a copy, e.g. image.clone().requires_grad_())"))
        except GradeFailure as problem:
            problems.append(_split(what, str(problem)))
    for model in ("vgg16", "tiny"):  # a changed model explains wrong maps: say it first
        problems[:0] = [(None, problem) for problem in _model_changes(student, model)]
    if problems:
        shown = _grouped(problems)
        more = len(shown) - MAX_PROBLEMS_SHOWN
        fail(" | ".join(shown[:MAX_PROBLEMS_SHOWN]) + (f" | ... and {more} more" if more > 0 else ""))


def _split(what: str, message: str) -> tuple:
    return (what, message[len(what) + 2:]) if message.startswith(what + ": ") else (None, message)


def _grouped(problems: list[tuple]) -> list[str]:
    """One line per distinct problem; the same problem in several calls is said once."""
    calls: dict[str, list] = {}
    for what, detail in problems:
        calls.setdefault(detail, []).append(what)
    lines = []
    for detail, whats in calls.items():
        whats = [w for w in whats if w]
        if not whats:
            lines.append(detail)
        elif len(whats) == 1:
            lines.append(f"{whats[0]}: {detail}")
        else:
            lines.append(f"{whats[0]} and {len(whats) - 1} other call(s): {detail}")
    return lines


@pytest.mark.task("M2")
def test_saliency_maps(student, reference, figures):
    """M2 saliency_maps: the VGG16 saliency map (top class) of every image in My-Images"""
    expected = reference.get("saliency_maps")
    value = collect(student, "saliency_maps")
    maps = value if isinstance(value, dict) else {}
    for name in sorted(expected):
        figures.matrices(f"Saliency map of {name}", _picture(maps.get(name)), expected[name], labels=())
    if not isinstance(value, dict):
        fail(f"`saliency_maps`: expected a dict image file name -> H x W map, got {describe(value)}")
    keys = list(value)
    if sorted(map(str, keys)) != sorted(expected) or not all(isinstance(k, str) for k in keys):
        hint = ""
        if sorted(str(k).replace("\\", "/").rsplit("/", 1)[-1] for k in keys) == sorted(expected):
            hint = " (use the file name only, e.g. 'cat.jpg', not its path)"
        fail(f"`saliency_maps`: expected keys {sorted(expected)}, one per image of My-Images, "
             f"got {sorted(map(repr, keys))[:10]}{hint}")
    upstream = _upstream_maps(student, expected)
    for name in sorted(expected):
        what = f"`saliency_maps[{name!r}]`"
        got = array(value[name], what)
        if tuple(got.shape) != tuple(expected[name].shape):
            fail(f"{what}: expected a map of shape {tuple(expected[name].shape)} (the 224 x 224 input), "
                 f"got shape {tuple(got.shape)}")
        if upstream is not None and _agrees(got, upstream[name]):
            continue  # what the student's own compute_saliency gives on these images (M1 judges it)
        _check_map(got, expected[name], what + " (VGG16 with the ImageNet weights in eval mode, the "
                   "template's load_image, default target)")


# -- map comparison ------------------------------------------------------------------------------
def _check_map(got: np.ndarray, expected: np.ndarray, what: str, *, nonnegative: bool = False) -> None:
    got, expected = np.asarray(got, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    if not np.all(np.isfinite(got)):
        fail(f"{what}: the map contains NaN or infinity")
    if nonnegative and got.size and got.min() < 0:
        fail(f"{what}: the map has negative values (min {got.min():.3g}); a saliency map is the max over "
             "channels of the absolute value of the gradient")
    scale = float(np.max(np.abs(expected))) or 1.0
    difference = np.abs(got - expected) / scale
    mean, off = float(difference.mean()), float(np.mean(difference > PIXEL_TOL))
    if mean <= MEAN_TOL and off <= OFF_FRACTION:
        return
    message = (f"{what}: differs from the reference map (max {scale:.3g}): mean difference {mean:.2%} of its "
               f"maximum (allowed {MEAN_TOL:.1%}), {off:.1%} of the pixels off by more than {PIXEL_TOL:.0%} "
               f"(allowed {OFF_FRACTION:.0%})")
    ratio = float(np.sum(np.abs(got))) / max(float(np.sum(np.abs(expected))), 1e-30)
    if ratio < 0.1 or ratio > 10:
        message += (f"; your map is about {ratio:.3g} times the reference's: use the gradient of the "
                    "unnormalised class score (not of a softmax probability or a loss) and do not rescale it")
    fail(message)


def _agrees(got, expected) -> bool:
    try:
        _check_map(got, expected, "map")
        return True
    except GradeFailure:
        return False


def _call(case: dict, shape: tuple, top: int) -> str:
    model = "the grader's VGG16" if case["model"] == "vgg16" else "a tiny CNN with 10 classes"
    target = "" if case["target"] is None else f", target={case['target']}"
    note = f" (top class {top})" if case["target"] is None else ""
    return f"compute_saliency({model}, a {'x'.join(map(str, shape))} image{target}){note}"


def _model_changes(student, model: str) -> list[str]:
    label = "the grader's VGG16" if model == "vgg16" else "the tiny CNN"
    try:
        before = collect(student, f"M1:{model}:state_before")
        after = collect(student, f"M1:{model}:state_after")
        if not all(isinstance(s, dict) and {"values", "requires_grad", "training"} <= set(s) for s in (before, after)):
            fail("unreadable")
    except GradeFailure as problem:
        return [f"could not check that compute_saliency leaves {label} unchanged: {problem}"]
    problems = []
    changed = sorted(k for k in set(before["values"]) | set(after["values"])
                     if before["values"].get(k) != after["values"].get(k))
    if changed:
        problems.append(f"compute_saliency changed {label}'s parameters or buffers {changed[:5]}"
                        f"{' ...' if len(changed) > 5 else ''} (it must leave the model's weights as they are)")
    flags = sorted(k for k in set(before["requires_grad"]) | set(after["requires_grad"])
                   if before["requires_grad"].get(k) != after["requires_grad"].get(k))
    if flags:
        problems.append(f"compute_saliency changed requires_grad of {label}'s parameters {flags[:5]}"
                        f"{' ...' if len(flags) > 5 else ''} (from {before['requires_grad'].get(flags[0])} to "
                        f"{after['requires_grad'].get(flags[0])}): leave the model's parameters as they were")
    modes = sorted(k for k in set(before["training"]) | set(after["training"])
                   if before["training"].get(k) != after["training"].get(k))
    if modes:
        was = "train" if before["training"].get(modes[0]) else "eval"
        problems.append(f"compute_saliency switched {label} (modules {modes[:3]}) out of {was} mode: "
                        "leave the model's train/eval mode as it was given")
    return problems


def _upstream_maps(student, expected: dict):
    """The student's compute_saliency on the handout's inputs, when it gave a usable map per image."""
    try:
        maps = student.get("upstream:saliency_maps")
    except Exception:  # noqa: BLE001 - unusable upstream: judge against the reference
        return None
    if not isinstance(maps, dict) or sorted(maps) != sorted(expected):
        return None
    usable = {}
    for name, value in maps.items():
        if not isinstance(value, np.ndarray) or value.shape != expected[name].shape or value.dtype.kind not in "iuf":
            return None
        usable[name] = value
    return usable


def _picture(value):
    """A 2-D array for the report's picture (a 1 x H x W map is shown too), else None."""
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        squeezed = np.squeeze(value)
        return squeezed if squeezed.ndim == 2 else None
    return None
