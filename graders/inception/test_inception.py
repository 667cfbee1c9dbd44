"""inception: fine-tuning vs feature extraction (Inception v3). One test per handout task (I2: two).

Fixtures (autograder/grading.py): `student` and `reference` are the exported values (same names,
plain data); `run` is the execution record; `figures` collects pictures for the report.

Every function is called on inputs the student never saw: a small grader-made model (I1, I4, I6), the
real Inception v3 with other class counts than the data set's 3 (I2: 5 and 7), other photographs (I3), a model whose predictions are known (I5).

Tolerances, and why:
- I1, I5: exact (flags; integer counts, a float matrix holding whole numbers is accepted).
- I2 pretrained parameters: 16 values of every tensor within 1e-6 of the checkpoint's (the same file is
  loaded: they are equal); pooled features within 1e-3 of the largest reference value (float32 sums
  in another order, another thread count).
- I3 'val' transforms: pixel values within 0.15 each and 0.01 on average of the reference's Resize(299),
  CenterCrop(299), ToTensor, Normalize (resizing a tensor, antialiased, instead of the PIL image differs
  by a few grey levels; a squashed resize, another crop or a missing normalisation are off by 0.5 and
  more). Deterministic: two calls under different torch seeds agree within 1e-6. On a solid colour
  every transform (augmented ones too) must give the normalised colour within 0.03. The augmented
  'train' is random: four seeds must not all give the same tensor (differences above 0.05).
- I4 tiny models: validation accuracies within 1e-6; returned weights within 1e-4 of the reference's
  (float32, 12 SGD steps: equivalent loops differ by ~1e-7). The loss weights read from the gradients
  reaching the two outputs (the tiny model hooks them) within 0.02 of 1 and 0.4. Real Inception v3 (2
  epochs of 2 steps at batch 2, heads only): accuracies within 1e-6, heads within 1e-3 of their largest
  reference value (another thread count sums in another order). Ties of validation accuracy: the
  weights of any epoch reaching the best accuracy are accepted (`>` or `>=`); the tiny run is built
  with one best epoch, the second of four, so returning the last weights is always caught.
- I6: the loaded model's outputs within 1e-5 of the original's (a file round trip is exact).
No double penalty: I2's frozen parameters are judged on the student's own set_parameter_requires_grad
(I1) where that explains them; I4-I6 use only grader-made models, never the student's I2 model.
"""
import numpy as np
import pytest

from autograder.artefacts import NotCollected
from autograder.checks import array, close, collect, describe, fail, is_close, number, same_shape

INPUT_SIZE = 299
TINY_EPOCHS, PLAIN_EPOCHS, REAL_EPOCHS = 4, 3, 2
AUX_WEIGHT = 0.4
TRANSFORM_PROBES = ["small.jpg", "tall.jpg", "wide.jpg"]
SOLID = "solid.png"


def _is_head(name: str) -> bool:
    return name.startswith(("fc.", "AuxLogits.fc."))


def _returned(student, name: str, call: str, what: str) -> None:
    value = collect(student, name)
    if not isinstance(value, dict) or value.get("len") != 2:
        kind = value.get("type") if isinstance(value, dict) else describe(value)
        fail(f"{call} should return a tuple ({what}); it returned {kind}")


# -- I1 --------------------------------------------------------------------------------------------
@pytest.mark.task("I1", visibility="after_published")
def test_set_parameter_requires_grad(student, reference):
    """I1 set_parameter_requires_grad: freezes every parameter when feature_extracting, changes nothing otherwise"""
    initial = reference.get("I1:initial")
    after = collect(student, "I1:after_false")
    changed = sorted(k for k in initial if after.get(k) != initial[k])
    if changed:
        fail("set_parameter_requires_grad(model, False) must leave the model as it is, but it changed "
             f"requires_grad of {', '.join(changed)} (the grader's model had {sum(not v for v in initial.values())} "
             "parameters frozen beforehand)")
    after = collect(student, "I1:after_true")
    trainable = sorted(k for k, v in after.items() if v)
    if trainable or sorted(after) != sorted(initial):
        fail(f"set_parameter_requires_grad(model, True) must freeze every parameter; still trainable: "
             f"{', '.join(trainable) or '(parameters were removed or added)'}")


# -- I2 --------------------------------------------------------------------------------------------
def _check_initialize(student, reference, n: int, feature_extract: bool) -> None:
    key = f"I2:{n}:{str(feature_extract).lower()}"
    call = f"initialize_model({n}, {feature_extract})"
    _returned(student, f"{key}:returned", call, "model, input_size")
    size = number(collect(student, f"{key}:input_size"), f"{call}[1] (input size)")
    if size != INPUT_SIZE:
        fail(f"{call}: the input size should be {INPUT_SIZE} (Inception v3), got {size:g}")
    shapes = collect(student, f"{key}:shapes")
    for prefix, in_features in (("fc.", 2048), ("AuxLogits.fc.", 768)):
        weights = {k: s for k, s in shapes.items() if k.startswith(prefix) and len(s) == 2}
        if [s for s in weights.values()] != [[n, in_features]]:
            found = ", ".join(f"{k} {tuple(s)}" for k, s in weights.items()) or "no linear layer"
            fail(f"{call}: `{prefix[:-1]}` should be a new Linear({in_features}, {n}) (weight of shape "
                 f"({n}, {in_features})); found {found}")
    logits = array(collect(student, f"{key}:logits"), f"{call}: the model's output (eval mode)")
    same_shape(logits, (2, n), f"{call}: the model's output on 2 images (eval mode)")

    expected = reference.get(f"{key}:samples")
    samples = collect(student, f"{key}:samples")
    missing = [k for k in expected if k not in samples]
    if missing:
        fail(f"{call}: the model lacks {len(missing)} of torchvision's Inception v3 tensors (e.g. {missing[0]}): "
             "build it with models.inception_v3")
    wrong = [k for k in expected if not is_close(samples[k], expected[k], atol=1e-6)]
    if wrong:
        fail(f"{call}: {len(wrong)} of the {len(expected)} pretrained tensors do not hold the ImageNet weights "
             f"(e.g. {wrong[0]}); load them with weights=models.Inception_V3_Weights.IMAGENET1K_V1 "
             "(use_pretrained=True is the default)")
    features = array(collect(student, f"{key}:features"), f"{call}: the 2048-d feature reaching fc")
    close(features.reshape(2, -1), reference.get(f"{key}:features"),
          f"{call}: the pooled features of 2 images (eval mode), compared with torchvision's pretrained "
          "Inception v3", rtol=1e-3)

    trainable = collect(student, f"{key}:trainable")
    frozen_heads = sorted(k for k, v in trainable.items() if _is_head(k) and not v)
    if frozen_heads:
        fail(f"{call}: the new classifier layers must be trainable; frozen: {', '.join(frozen_heads)}")
    others = {k for k, v in trainable.items() if not _is_head(k) and v}
    total = sum(not _is_head(k) for k in trainable)
    expected_others = set() if feature_extract else {k for k in trainable if not _is_head(k)}
    if others == expected_others:
        return
    upstream = _upstream_trainable(student, feature_extract)
    if upstream is not None and others == upstream:
        return  # consistent with the student's own set_parameter_requires_grad (I1 judges that)
    if feature_extract:
        fail(f"{call}: in feature-extraction mode only fc and AuxLogits.fc may be trainable; "
             f"{len(others)} of the {total} other parameters are trainable (e.g. {sorted(others)[0]})")
    fail(f"{call}: when fine-tuning every parameter must be trainable; {total - len(others)} of the "
         f"{total} pretrained parameters are frozen")


def _upstream_trainable(student, feature_extract: bool):
    try:
        upstream = student.get(f"upstream:I2:{str(feature_extract).lower()}:trainable")
        return {k for k, v in upstream.items() if not _is_head(k) and v}
    except Exception:  # noqa: BLE001 - no usable upstream: judge against the reference
        return None


@pytest.mark.task("I2", visibility="after_published")
def test_initialize_feature_extract(student, reference):
    """I2 initialize_model(5, feature_extract=True): ImageNet Inception v3, new fc and AuxLogits.fc, only they trainable"""
    _check_initialize(student, reference, 5, True)


@pytest.mark.task("I2", visibility="after_published")
def test_initialize_finetune(student, reference):
    """I2 initialize_model(7, feature_extract=False): ImageNet Inception v3, new fc and AuxLogits.fc, all trainable"""
    _check_initialize(student, reference, 7, False)


# -- I3 --------------------------------------------------------------------------------------------
def _image(student, name: str, what: str) -> np.ndarray:
    return _image_value(collect(student, name), what)


def _image_value(value, what: str) -> np.ndarray:
    got = array(value, what)
    same_shape(got, (3, INPUT_SIZE, INPUT_SIZE), what)
    if got.dtype.kind != "f":
        fail(f"{what}: expected a float tensor, got dtype {got.dtype}")
    return got


@pytest.mark.task("I3", visibility="after_published")
def test_transforms(student, reference):
    """I3 data_transforms / augment_transforms: 3x299x299 normalized; deterministic 'val', random augmented 'train'"""
    for dict_name in ("data_transforms", "augment_transforms"):
        keys = collect(student, f"I3:{dict_name}:keys")
        if not {"train", "val"} <= set(keys):
            fail(f"`{dict_name}` should be a dict with the keys 'train' and 'val'; its keys are {keys}")
    for dict_name in ("data_transforms", "augment_transforms"):
        for file in TRANSFORM_PROBES:
            what = f"{dict_name}['val'](image {file})"
            first = _image(student, f"I3:{dict_name}:val:{file}:1", what)
            close(first, reference.get(f"I3:val:{file}"), what + " (resize 299, centre crop 299, normalize)",
                  atol=0.15, mean_atol=0.01)
            second = _image(student, f"I3:{dict_name}:val:{file}:2", what)
            if not is_close(second, first, atol=1e-6):
                fail(f"{what} gives another result on a second call: the 'val' transform must be "
                     "deterministic (no random crop or flip)")
    colour = reference.get("I3:solid")
    for dict_name in ("data_transforms", "augment_transforms"):
        for split in ("train", "val"):
            what = f"{dict_name}[{split!r}](an image of one solid colour)"
            got = _image(student, f"I3:{dict_name}:{split}:{SOLID}", what)
            close(got, np.broadcast_to(colour[:, None, None], got.shape), what + ": scaled to [0, 1] and "
                  "normalized with the ImageNet mean and std, no colour changes", atol=0.03)
    for file in TRANSFORM_PROBES + [SOLID]:
        shape = collect(student, f"I3:data_transforms:train:{file}:shape")
        if list(shape) != [3, INPUT_SIZE, INPUT_SIZE]:
            fail(f"data_transforms['train'](image {file}): expected shape (3, 299, 299), got {tuple(shape)}")
    outputs = collect(student, "I3:augment_transforms:train:wide.jpg")
    if not isinstance(outputs, list) or len(outputs) != 4:
        fail(f"augment_transforms['train'] could not be applied 4 times: got {describe(outputs)}")
    outputs = [_image_value(o, "augment_transforms['train'](image wide.jpg)") for o in outputs]
    if all(is_close(o, outputs[0], atol=0.05) for o in outputs[1:]):
        fail("augment_transforms['train'] gave the same tensor under 4 different torch seeds: it should "
             "augment at random (RandomResizedCrop, RandomHorizontalFlip)")


# -- I4 --------------------------------------------------------------------------------------------
def _history(student, reference, run: str, call: str) -> list[float]:
    value = collect(student, f"I4:{run}:history")
    if isinstance(value, np.ndarray) and value.ndim == 1:
        value = list(value)   # a 1-d tensor or array of accuracies is accepted too
    if not isinstance(value, (list, tuple)):
        fail(f"{call}: the second value returned should be the list of validation accuracies, got {describe(value)}")
    got = [number(v, f"{call}: validation accuracy") for v in value]
    expected = [float(v) for v in reference.get(f"I4:{run}:history")]
    if len(got) != len(expected):
        fail(f"{call}: expected one validation accuracy per epoch ({len(expected)}), got {len(got)}: {got}")
    if not np.allclose(got, expected, rtol=0, atol=1e-6):
        hint = ""
        if np.allclose(got, [100 * e for e in expected], atol=1e-4):
            hint = " (accuracies are fractions, not percentages)"
        fail(f"{call}: validation accuracies per epoch expected {_fmt(expected)}, got {_fmt(got)}{hint}")
    return got


def _fmt(values) -> str:
    return "[" + ", ".join(f"{v:.4f}" for v in values) + "]"


def _state(student, name: str, call: str, keys) -> dict:
    value = collect(student, name)
    if not isinstance(value, dict):
        fail(f"{call}: the first value returned should be the trained model, got {describe(value)}")
    missing = [k for k in keys if k not in value]
    if missing:
        fail(f"{call}: the returned model has no {missing[0]}: return the model that was passed in")
    return {k: array(value[k], f"{call}: {k}") for k in keys}


def _same_state(a: dict, b: dict, tolerance: dict) -> bool:
    return all(is_close(a[k], np.asarray(b[k]), **tolerance) for k in b)


def _best_weights(student, reference, run: str, call: str, keys, tolerance: dict) -> None:
    """The returned weights are those of an epoch with the best validation accuracy (any if tied)."""
    history = [float(v) for v in reference.get(f"I4:{run}:history")]
    trajectory = reference.get(f"I4:{run}:trajectory")
    got = _state(student, f"I4:{run}:{'heads' if run == 'real' else 'weights'}", call, keys)
    best = max(history)
    candidates = [trajectory[e] for e, acc in enumerate(history) if acc == best]
    if best == 0:
        candidates.append(reference.get(f"I4:{run}:initial"))
    if any(_same_state(got, {k: c[k] for k in keys}, tolerance) for c in candidates):
        return
    best_epoch = history.index(best) + 1
    for epoch, state in enumerate(trajectory, start=1):
        if _same_state(got, {k: state[k] for k in keys}, tolerance):
            fail(f"{call}: the returned model holds the weights after epoch {epoch} (validation accuracy "
                 f"{history[epoch - 1]:.4f}), not the best ones (after epoch {best_epoch}, accuracy {best:.4f}): "
                 "keep a copy (copy.deepcopy) of the best state_dict and load it before returning")
    if _same_state(got, {k: v for k, v in reference.get(f"I4:{run}:initial").items() if k in keys}, tolerance):
        fail(f"{call}: the returned model holds the initial weights, not the best trained ones (after epoch "
             f"{best_epoch}, validation accuracy {best:.4f})")
    expected = {k: candidates[0][k] for k in keys}
    name = next(k for k in keys if not is_close(got[k], np.asarray(expected[k]), **tolerance))
    close(got[name], expected[name], f"{call}: the returned model's {name} (expected the weights after epoch "
          f"{best_epoch}, the best validation accuracy)", **tolerance)


def _loss_weights(records: list, train_x: np.ndarray, train_y: np.ndarray) -> tuple[float, float] | None:
    """The weights of the main and auxiliary cross-entropy terms, read from the gradients reaching the
    two outputs: d loss / d logits = w * (softmax(logits) - onehot(y)) / batch size."""
    found = {"main": [], "aux": []}
    for record in records:
        x = np.asarray(record["x"], dtype=np.float64)
        rows = [int(np.argmin(np.abs(train_x - row).sum(axis=1))) for row in x]
        y = train_y[rows]
        for key in found:
            logits = np.asarray(record[key], dtype=np.float64)
            grad = record.get(f"{key}_grad")
            if grad is None:
                found[key].append(0.0)
                continue
            p = np.exp(logits - logits.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            unit = (p - np.eye(logits.shape[1])[y]) / len(y)
            found[key].append(float((np.asarray(grad, dtype=np.float64) * unit).sum() / (unit * unit).sum()))
    if not found["main"]:
        return None
    return float(np.mean(found["main"])), float(np.mean(found["aux"]))


TINY_KEYS = ["trunk.weight", "trunk.bias", "fc.weight", "fc.bias", "AuxLogits.fc.weight", "AuxLogits.fc.bias"]
REAL_KEYS = ["fc.weight", "fc.bias", "AuxLogits.fc.weight", "AuxLogits.fc.bias"]
TINY_TOL = {"atol": 1e-4}
REAL_TOL = {"rtol": 1e-3}


@pytest.mark.task("I4", visibility="after_published")
def test_train_model(student, reference):
    """I4 train_model: loss = main + 0.4 * aux in train mode, one val accuracy per epoch, best-val weights (tiny models; real Inception v3 at batch 2)"""
    # 1. A tiny model with Inception's interface, is_inception=True.
    call = f"train_model(tiny Inception-like model, ..., num_epochs={TINY_EPOCHS}, is_inception=True)"
    _returned(student, "I4:tiny:returned", call, "model, val_acc_history")
    records = collect(student, "I4:tiny:records")
    weights = _loss_weights(records if isinstance(records, list) else [],
                            reference.get("I4:tiny:train_x"), reference.get("I4:tiny:train_y"))
    if weights is None:
        fail(f"{call}: the model was never run in train mode with gradients enabled")
    main, aux = weights
    if abs(main - 1) > 0.02 or abs(aux - AUX_WEIGHT) > 0.02:
        fail(f"{call}: in train mode the loss should be criterion(outputs, labels) + 0.4 * "
             f"criterion(aux_outputs, labels); the gradients reaching the two outputs show the weights "
             f"{main:.2f} (main output) and {aux:.2f} (auxiliary output)")
    _history(student, reference, "tiny", call)
    _best_weights(student, reference, "tiny", call, TINY_KEYS, TINY_TOL)

    # 2. A tiny plain classifier, is_inception=False.
    call = f"train_model(tiny plain model, ..., num_epochs={PLAIN_EPOCHS}, is_inception=False)"
    _returned(student, "I4:plain:returned", call, "model, val_acc_history")
    _history(student, reference, "plain", call)
    _best_weights(student, reference, "plain", call, [k for k in TINY_KEYS if not k.startswith("AuxLogits")],
                  TINY_TOL)

    # 3. The real Inception v3, frozen but for its two heads, batch 2.
    call = f"train_model(Inception v3, batch 2, ..., num_epochs={REAL_EPOCHS}, is_inception=True)"
    _returned(student, "I4:real:returned", call, "model, val_acc_history")
    _history(student, reference, "real", call)
    _best_weights(student, reference, "real", call, REAL_KEYS, REAL_TOL)


# -- I5 --------------------------------------------------------------------------------------------
@pytest.mark.task("I5", visibility="after_published")
def test_confusion_matrix(student, reference, figures):
    """I5 confusion_matrix: exact counts, rows = true class, columns = predicted class (a model with known predictions)"""
    for case in ("a", "b"):
        expected = reference.get(f"I5:{case}")
        n = len(expected)
        what = f"confusion_matrix(model, loader of {int(expected.sum())} items, num_classes={n})"
        got = array(collect(student, f"I5:{case}"), what, ndim=2)
        if case == "a":
            figures.matrices("Confusion matrix of a grader-made model (rows: true class, columns: predicted class)",
                             got, expected, labels=[str(i) for i in range(n)])
        same_shape(got, (n, n), what)
        if not np.all(np.isfinite(got)) or not np.all(got == np.round(got)):
            fail(f"{what}: expected whole-number counts, got {got.tolist()}")
        if np.array_equal(got, expected):
            continue
        if np.array_equal(got, expected.T):
            fail(f"{what}: your matrix is the transpose of the expected one: rows must be the true class, "
                 f"columns the predicted class. Expected {expected.tolist()}, got {got.astype(int).tolist()}")
        fail(f"{what}: expected {expected.tolist()}, got {got.astype(int).tolist()}")


# -- I6 --------------------------------------------------------------------------------------------
@pytest.mark.task("I6", visibility="after_published")
def test_save_load_round_trip(student, reference):
    """I6 save_model / load_model: the loaded model gives the saved model's outputs (a small model of another class)"""
    what = "load_model(path)(x) after save_model(model, path)"
    try:
        value = student.get("I6:output")
    except NotCollected as problem:
        fail(f"{what}, on a small model of another class than Inception v3, failed: {problem}. save_model must "
             "write the whole model to `path` and load_model must rebuild it from `path` alone")
    got = array(value, what)
    expected = reference.get("I6:output")
    same_shape(got, expected.shape, what)
    if is_close(got, reference.get("I6:scrambled"), atol=1e-5) and not is_close(got, expected, atol=1e-5):
        fail(f"{what}: the loaded model is the original object (changed after saving), not a model read from "
             "the file: load_model must rebuild the model from `path`")
    close(got, expected, what + ", compared with the saved model's outputs (eval mode)", atol=1e-5)
