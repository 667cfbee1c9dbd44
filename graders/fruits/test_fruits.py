"""fruits: deep features and cosine similarity (ResNet-18). One test per handout task (F4, F8: two).

Fixtures (autograder/grading.py): `student` and `reference` are the exported values (same names,
plain data); `run` is the execution record; `figures` collects pictures for the report.

Tolerances, and why:
- F1 transform: pixel values after normalisation within 0.15 each and 0.01 on average: resizing a
  tensor (antialiased) instead of the PIL image differs by a few grey levels; a wrong size, crop,
  scale or normalisation is off by far more (0.5 and up).
- F3/F4 features: within 1e-3 of the largest reference value: float32 sums in another order
  (a batch instead of one image, a sliced Sequential) differ by ~1e-6 relative.
- F5 similarities: within 1e-4 (cosines lie in [-1, 1]); F7 accuracy within 1e-6.
No double penalty: F4's globals, F5, F7 and F8 are judged on the student's own upstream values.
"""
import numpy as np
import pytest

from autograder.checks import (array, close, collect, fail, feature_dict, is_close, names_pair, number,
                               same_shape, describe)

FEATURE_TOL = {"atol": 0.0, "rtol": 1e-3}
TRANSFORM_PROBES = ["large.jpg", "portrait.jpg", "small.jpg", "wide.jpg"]


@pytest.mark.task("F1", visibility="after_published")
def test_transform(student, reference):
    """F1 transform: resize 256, centre crop 224, [0, 1], ImageNet normalisation (on unseen images)"""
    for file in TRANSFORM_PROBES:
        got = array(collect(student, f"transform:{file}"), f"transform(image {file})")
        same_shape(got, (3, 224, 224), f"transform(image {file})")
        if got.dtype != np.float32:
            fail(f"transform(image {file}): expected dtype float32, got {got.dtype}")
        close(got, reference.get(f"transform:{file}"), f"transform(image {file})", atol=0.15, mean_atol=0.01)


@pytest.mark.task("F2")
def test_datasets(student, reference):
    """F2 trainset and testset: one gallery / one probe image per class, ImageFolder classes"""
    classes = reference.get("classes")
    for split in ("trainset", "testset"):
        summary = collect(student, f"{split}:summary")
        expected_files = reference.get(f"{split}:files")
        if summary["len"] != len(classes):
            fail(f"`{split}`: expected {len(classes)} images (one per class), got {summary['len']}")
        if summary["classes"] != classes:
            fail(f"`{split}.classes`: expected {classes}, got {summary['classes']}")
        if summary.get("samples") is None:
            fail(f"`{split}` has no `samples` list: use an ImageFolder-style dataset")
        by_content = {digest: (name, file) for name, file, digest in expected_files}
        for folder, file, label, digest in summary["samples"]:
            if digest not in by_content:
                kind = "gallery.jpg" if split == "trainset" else "probe.jpg"
                fail(f"`{split}` holds {folder}/{file}, which is not a {kind} image of the data set")
            name, _ = by_content[digest]
            if label != classes.index(name):
                fail(f"`{split}`: the image of class {name!r} has label {label}, expected {classes.index(name)}")
        if sorted(summary["labels"]) != list(range(len(classes))):
            fail(f"`{split}`: the labels of its items should be 0..{len(classes) - 1}, one each; got {summary['labels']}")


@pytest.mark.task("F3", visibility="after_published")
def test_network(student, reference):
    """F3 network: ImageNet ResNet-18 returning the 512-d pooled feature"""
    expected = reference.get("network:output")
    got = array(collect(student, "network:output"), "network(batch)")
    if got.size != expected.size:
        fail(f"network(batch of {len(expected)} images): expected {len(expected)} x 512 features, "
             f"got shape {tuple(got.shape)}")
    close(got.reshape(expected.shape), expected, "network(batch) features", **FEATURE_TOL)


@pytest.mark.task("F4", share=2, visibility="after_published")
def test_extract_function(student, reference):
    """F4 extract(dataset, network) on a dataset it never saw (5 other classes, the grader's ResNet-18)"""
    expected = reference.get("extract:probe")
    got = feature_dict(collect(student, "extract:probe"), "extract(unseen dataset, network)",
                       keys=sorted(expected), dim=512)
    for label, feature in expected.items():
        close(got[label], feature, f"extract(unseen dataset, network)[{label}]", **FEATURE_TOL)


@pytest.mark.task("F4", share=1)
def test_feature_globals(student, reference):
    """F4 train_features and test_features: extract applied to trainset and testset"""
    for split in ("train", "test"):
        name = f"{split}_features"
        expected = reference.get(name)
        if _is_the_reference(student, reference, name):
            continue
        upstream = _upstream(student, f"upstream:{name}", sorted(expected))
        raw = _upstream(student, name, sorted(expected))
        if upstream is not None and raw is not None and _all_close(raw, upstream):
            continue  # consistent with the student's own datasets and network (F2/F3 judge those)
        got = feature_dict(collect(student, name), f"`{name}`", keys=sorted(expected), dim=512)
        label = next(k for k in sorted(expected) if not is_close(got[k], expected[k], **FEATURE_TOL))
        close(got[label], expected[label], f"`{name}`[{label}]", **FEATURE_TOL)


@pytest.mark.task("F5")
def test_similarities(student, reference, figures):
    """F5 similarities: test x train cosine similarities (rows = true class)"""
    classes = reference.get("classes")
    n = len(classes)
    got = array(collect(student, "similarities"), "`similarities`", ndim=2)
    figures.matrices("Similarity matrix (rows: test class, columns: train class)",
                     got, reference.get("similarities"), labels=classes)
    same_shape(got, (n, n), "`similarities`")
    expected = _similarities_from_student_features(student, n)
    if expected is not None and is_close(got, expected, atol=1e-4):
        return
    close(got, reference.get("similarities"), "`similarities`", atol=1e-4)


@pytest.mark.task("F6")
def test_plot(run):
    """F6 the similarity matrix is shown as an image"""
    if run.image_outputs == 0:
        fail("no cell of the notebook displays an image (show `similarities` with plt.imshow or similar)")


@pytest.mark.task("F7")
def test_accuracy(student, reference):
    """F7 accuracy: fraction of test classes whose most similar train class is their own"""
    got = number(collect(student, "accuracy"), "`accuracy`")
    similarities = _upstream_similarities(student, reference)
    expected = float(np.mean(similarities.argmax(axis=1) == np.arange(len(similarities))))
    if abs(got - expected) > 1e-6:
        fail(f"`accuracy`: expected {expected:.4f} (from your similarities), got {got:.4f}")


@pytest.mark.task("F8")
def test_misclassified(student, reference):
    """F8 misclassified: (true class, predicted class) for every wrongly matched test class"""
    classes = reference.get("classes")
    value = collect(student, "misclassified")
    if not isinstance(value, (list, tuple)):
        fail(f"`misclassified`: expected a list of (true, predicted) class-name pairs, got {describe(value)}")
    got = sorted(names_pair(pair, "`misclassified` item") for pair in value)
    similarities = _upstream_similarities(student, reference)
    predicted = similarities.argmax(axis=1)
    expected = sorted((classes[t], classes[p]) for t, p in enumerate(predicted) if t != p)
    if got != expected:
        fail(f"`misclassified`: expected {expected} (from your similarities), got {got}")


@pytest.mark.task("F8")
def test_most_dissimilar(student, reference):
    """F8 most_dissimilar: the pair of class names with the lowest similarity"""
    classes = reference.get("classes")
    got = names_pair(collect(student, "most_dissimilar"), "`most_dissimilar`")
    similarities = _upstream_similarities(student, reference)
    row, column = divmod(int(np.argmin(similarities)), similarities.shape[1])
    expected = (classes[row], classes[column])
    if got != expected and got != expected[::-1]:
        fail(f"`most_dissimilar`: expected {expected} (from your similarities), got {got}")


# -- upstream values: the student's own, where they are usable ----------------------------------
def requested_values(student, reference) -> set[str]:
    """The harvest's costly second step (autograder/execution.py): the student's own upstream
    features, only for a split whose features are not the reference's (test_feature_globals
    passes those before it looks at the upstream)."""
    return {f"upstream:{split}_features" for split in ("train", "test")
            if not _is_the_reference(student, reference, f"{split}_features")}


def _is_the_reference(student, reference, name: str) -> bool:
    expected = reference.get(name)
    got = _upstream(student, name, sorted(expected), dim=512)
    return got is not None and _all_close(got, expected)


def _all_close(got: dict, expected: dict) -> bool:
    return all(is_close(got[k], expected[k], **FEATURE_TOL) for k in expected)


def _upstream(artefacts, name, keys, dim=None):
    """A feature dict of the student's, or None. dim=None takes the student's own feature size:
    a network that keeps its 1000-class fc costs F3, not F4 and F5 too."""
    try:
        value = artefacts.get(name)
        if dim is None:
            first = next(iter(value.values()))
            dim = int(np.asarray(first).size)
        return feature_dict(value, name, keys=keys, dim=dim)
    except Exception:  # noqa: BLE001 - an unusable upstream value means: judge against the reference
        return None


def _similarities_from_student_features(student, n):
    train = _upstream(student, "train_features", list(range(n)))
    test = _upstream(student, "test_features", list(range(n)))
    if train is None or test is None:
        return None
    a = np.stack([test[k] for k in range(n)]).astype(np.float64)
    b = np.stack([train[k] for k in range(n)]).astype(np.float64)
    norms = np.linalg.norm(a, axis=1)[:, None] * np.linalg.norm(b, axis=1)[None, :]
    return (a @ b.T) / np.where(norms == 0, 1, norms)


def _upstream_similarities(student, reference) -> np.ndarray:
    """The student's similarity matrix when it is a usable n x n array, else the reference's."""
    expected = reference.get("similarities")
    try:
        got = student.get("similarities")
        if isinstance(got, np.ndarray) and got.shape == expected.shape and np.all(np.isfinite(got)):
            return got.astype(np.float64)
    except Exception:  # noqa: BLE001
        pass
    return expected
