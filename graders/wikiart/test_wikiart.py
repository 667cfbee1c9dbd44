"""wikiart: fine-tuning AlexNet, TensorBoard summaries. W1: one test per variant; W2-W4: one test each.
W5 (three free-text answers) is a manual item: no test, a TA marks the `## Answer W5` cell.

Fixtures (autograder/grading.py): `student` and `reference` are the exported values (same names,
plain data; see harvest.py for how each was measured); `run` is the execution record.

What is checked, tolerances, and why:
- W1 build_alexnet(n, variant), n = 3 and 7, both variants:
  * output shape (2, n) on two grader images;
  * the nn.Linear layers the forward pass calls, in order (forward hooks), (in, out):
    "last" (9216, 4096), (4096, 4096), (4096, n); "last_two" (9216, 4096), (4096, n);
  * which parameters carry the pretrained values: SHA-256 digests of every parameter, matched against
    the weight store's AlexNet (exact: the pretrained values are loaded, not computed). Required:
    every conv layer and fc6 (and fc7 for "last"); not allowed: a replaced layer's pretrained values
    ("last_two" must drop fc7); the parameters that are not pretrained must be exactly one
    Linear(4096, n) (shapes (n, 4096) and (n,));
  * the function: in eval mode, the output must equal the new layer applied to the pretrained
    network's relu7 ("last") or relu6 ("last_two") activations, computed here in float64 from the
    student's own new layer: |difference| <= 1e-5 + 1e-4 * max|expected|. float32 order-of-summation
    noise is ~1e-8 here; a missing ReLU or a wrong layer changes outputs by ~1e-2 (stand-in weights)
    or far more (ImageNet weights). Names, Sequential or not, dropout kept or not: all free.
- W2 criterion(scores, labels) on grader scores: a differentiable one-element tensor within 1e-5
  (relative) of the mean cross-entropy. make_optimizer(model, lr=0.0123) on a tiny AlexNet-shaped
  model, all trainable and with frozen features: a torch.optim.SGD (momentum, weight decay, nesterov
  free), lr exactly the argument in every group, holding every trainable parameter of that model and
  nothing foreign, no duplicates. Frozen parameters handed to SGD as well are accepted: they have no
  gradient, so SGD leaves them untouched (behaviour is identical).
- W3 evaluate(model, loader) with a grader model whose predictions are known: accuracy within 1e-6 of
  the designed value (7/10 in batches of 4, 3/7 in batches of 3: neither equals a mean of per-batch
  accuracies); a fraction in [0, 1] as the template asks (a percentage fails); every forward pass in
  eval mode and without autograd recording (torch.no_grad or torch.inference_mode).
- W4 train(model, loaders, 2, log_dir) on a tiny model: the event files under log_dir (any sub
  folder; '<sub folder>/<tag>' names, so add_scalars works) must hold three series, found by this rule
  on lower-cased names: training loss = a tag containing "loss" and neither "val" nor "test";
  training accuracy = "acc" and neither "val" nor "test"; validation accuracy = "acc" and "val" or
  "test". Each must have exactly one value per epoch (2 distinct steps; which steps is free); losses
  finite; accuracies in [0, 1] or in [0, 100] (percentages are fine in TensorBoard); the trained
  model's validation accuracy (measured by the harness) must be one of the logged validation values
  (within 1e-5, or 1e-3 as a percentage): the last epoch's, or the best epoch's if train restores the
  best weights. The logged training accuracy is not recomputed (weights change during an epoch).
  Also: the model's parameters changed, and every forward pass on training inputs with autograd on
  ran in training mode (model.train() at each epoch: evaluate() switches to eval mode). Validation
  losses and any other extra tags are allowed. The logged series go to the report (figures.curves),
  drawn beside the student's own TensorBoard logs when their submission holds event files.
No double penalty: W4 runs the student's train with their own criterion / make_optimizer / evaluate;
only where one of those cannot be used at all (raises, or evaluate returns no number) does the
harness's standard one stand in during that run. The tiny model has no dropout or batch norm, and
its validation batches are all the same size, so a W3 mistake (no eval mode, no no_grad, a mean of
batch accuracies) does not change W4's numbers either.
"""
import math

import numpy as np
import pytest

from autograder.artefacts import NotCollected
from autograder.checks import array, close, describe, fail, number, same_shape

CLASS_COUNTS = (3, 7)          # harvest.CLASS_COUNTS
PROBE_LR = 0.0123              # harvest.PROBE_LR
EPOCHS = 2                     # harvest.EPOCHS
EVALUATE_BATCH = {"a": 4, "b": 3}     # harvest.EVALUATE_BATCH
EVALUATE_ITEMS = {"a": 10, "b": 7}    # fixture_data.EVALUATE_DESIGN
KEPT = {"last": "every conv layer, fc6 and fc7 (classifier Linear(9216, 4096) and Linear(4096, 4096))",
        "last_two": "every conv layer and fc6 (classifier Linear(9216, 4096))"}
PENULTIMATE = {"last": "relu7 (fc7 followed by its ReLU)", "last_two": "relu6 (fc6 followed by its ReLU)"}


# -- W1 ---------------------------------------------------------------------------------------------
@pytest.mark.task("W1", visibility="after_published")
def test_build_last(student, reference):
    """W1 build_alexnet(n, "last"): pretrained AlexNet with its last FC replaced by Linear(4096, n)"""
    _check_variant(student, reference, "last")


@pytest.mark.task("W1", visibility="after_published")
def test_build_last_two(student, reference):
    """W1 build_alexnet(n, "last_two"): fc7 and fc8 removed, one new Linear(4096, n) after fc6"""
    _check_variant(student, reference, "last_two")


def _check_variant(student, reference, variant):
    pretrained = reference.get("alexnet:pretrained")
    name_of = {sha: name for name, _shape, sha, _grad in pretrained}
    shape_of = {name: tuple(shape) for name, shape, _sha, _grad in pretrained}
    order = {name: i for i, (name, *_rest) in enumerate(pretrained)}
    for n in CLASS_COUNTS:
        what = f"build_alexnet({n}, {variant!r})"
        got = _collect(student, f"build_alexnet:{variant}:{n}", what)
        expected = reference.get(f"build_alexnet:{variant}:{n}")
        output = array(got["output"], f"{what}: model(batch of 2 images)")
        same_shape(output, (2, n), f"{what}: model(batch of 2 images)")

        linears = [tuple(pair) for pair in got["linears"]]
        wanted = [tuple(pair) for pair in expected["linears"]]
        if linears != wanted:
            fail(f"{what}: the forward pass calls the Linear layers (in, out) {_pairs(linears)}; expected "
                 f"{_pairs(wanted)}")

        kept = {name_of[sha] for _name, _shape, sha, _grad in got["params"] if sha in name_of}
        must_keep = {name_of[sha] for _name, _shape, sha, _grad in expected["params"] if sha in name_of}
        missing = sorted(must_keep - kept, key=order.get)
        if missing:
            fail(f"{what}: {len(missing)} of the {len(must_keep)} pretrained parameter tensors it must keep do "
                 f"not hold the ImageNet values, e.g. {_named(missing[:3], shape_of)}. Load the weights "
                 f"(models.alexnet(weights=models.AlexNet_Weights.IMAGENET1K_V1)) and keep {KEPT[variant]} unchanged")
        extra = sorted(kept - must_keep, key=order.get)
        if extra:
            fail(f"{what}: the model still holds the pretrained {_named(extra, shape_of)}, which this variant "
                 f"replaces; only {KEPT[variant]} stay")
        new = sorted(tuple(shape) for _name, shape, sha, _grad in got["params"] if sha not in name_of)
        new_expected = sorted(tuple(shape) for _name, shape, sha, _grad in expected["params"] if sha not in name_of)
        if new != new_expected:
            fail(f"{what}: the parameters that are not pretrained have shapes {new}; expected {new_expected} "
                 f"(exactly one new Linear(4096, {n}))")

        weight = array(got["head_weight"], f"{what}: weight of the new layer")
        bias = np.zeros(n) if got["head_bias"] is None else array(got["head_bias"], f"{what}: bias of the new layer")
        features = np.asarray(reference.get(f"alexnet:penultimate:{variant}"), dtype=np.float64)
        should = features @ weight.astype(np.float64).T + bias.astype(np.float64)
        close(output, should, f"{what}: output in eval mode, compared with your new layer applied to the "
              f"pretrained AlexNet's {PENULTIMATE[variant]} activations", atol=1e-5, rtol=1e-4)


def _collect(artefacts, name, what):
    """The exported value, or a failure naming the call that could not produce it."""
    try:
        return artefacts.get(name)
    except NotCollected as error:
        fail(f"{what}: {error}")


def _pairs(pairs):
    return ", ".join(f"({a}, {b})" for a, b in pairs) or "none"


def _named(names, shape_of):
    return ", ".join(f"{name} {list(shape_of[name])}" for name in names)


# -- W2 ---------------------------------------------------------------------------------------------
@pytest.mark.task("W2", visibility="after_published")
def test_criterion_and_optimizer(student, reference):
    """W2 criterion is the cross-entropy; make_optimizer(model, lr) is SGD over the trainable parameters"""
    loss = _collect(student, "criterion:probe", "criterion(scores, labels)")
    if not isinstance(loss, dict) or not loss.get("differentiable"):
        got = loss.get("type") if isinstance(loss, dict) else describe(loss)
        fail(f"criterion(scores, labels): expected a one-element tensor that autograd can differentiate (the "
             f"loss to call backward() on), got {got}")
    value = number(loss["value"], "criterion(scores, labels)")
    expected = reference.get("criterion:probe")["value"]
    if not math.isfinite(value) or abs(value - expected) > 1e-5 * max(1.0, abs(expected)):
        fail(f"criterion(scores, labels) on 6 grader score vectors of 5 classes: expected {expected:.6f} (the mean "
             f"cross-entropy, as nn.CrossEntropyLoss() gives), got {value:.6f}")

    for config, on in (("all", "a model whose parameters are all trainable"),
                       ("frozen_features", "a model whose `features` are frozen")):
        what = f"make_optimizer(model, lr={PROBE_LR}) on {on}"
        summary = _collect(student, f"make_optimizer:{config}", what)
        if not summary["is_sgd"]:
            fail(f"{what}: expected a torch.optim.SGD (stochastic gradient descent), got {summary['class']}")
        lrs = summary["lrs"]
        if not lrs or any(not math.isfinite(lr) or abs(lr - PROBE_LR) > 1e-12 for lr in lrs):
            fail(f"{what}: every parameter group should use the learning rate passed in ({PROBE_LR}); got {lrs}")
        if summary["trainable_held"] != summary["n_trainable"]:
            fail(f"{what}: the optimizer holds {summary['trainable_held']} of the model's {summary['n_trainable']} "
                 "trainable parameter tensors; it must update all of them (use the `model` argument)")
        if summary["foreign"]:
            fail(f"{what}: the optimizer holds {summary['foreign']} tensor(s) that are not parameters of the model "
                 "passed to it")
        if summary["duplicates"]:
            fail(f"{what}: {summary['duplicates']} parameter tensor(s) appear more than once in the optimizer")


# -- W3 ---------------------------------------------------------------------------------------------
@pytest.mark.task("W3", visibility="after_published")
def test_evaluate(student, reference):
    """W3 evaluate(model, loader): fraction correct, in eval mode, without gradients (grader model)"""
    for key, batch_size in EVALUATE_BATCH.items():
        what = f"evaluate(model, loader) with {EVALUATE_ITEMS[key]} items in batches of {batch_size}"
        got = _collect(student, f"evaluate:{key}", what)
        expected = reference.get(f"evaluate:{key}")["accuracy"]
        calls = got["calls"]
        if not calls:
            fail(f"{what}: the model was never called")
        if any(training for training, _grad in calls):
            count = sum(training for training, _grad in calls)
            fail(f"{what}: the model was in training mode during {count} of its {len(calls)} forward passes; "
                 "call model.eval() before evaluating")
        if any(grad for _training, grad in calls):
            count = sum(grad for _training, grad in calls)
            fail(f"{what}: autograd recorded {count} of the {len(calls)} forward passes; evaluate under "
                 "torch.no_grad() (or torch.inference_mode())")
        accuracy = number(got["accuracy"], what)
        if abs(accuracy - expected) > 1e-6:
            hint = ""
            if abs(accuracy - 100 * expected) < 1e-4:
                hint = " (a percentage: return the fraction, between 0 and 1)"
            fail(f"{what}: expected accuracy {expected:.4f} (correct items / all items), got {accuracy:.4f}{hint}")


# -- W4 ---------------------------------------------------------------------------------------------
@pytest.mark.task("W4", visibility="after_published")
def test_train(student, reference, figures):
    """W4 train(model, loaders, 2, log_dir): trains, and logs training loss, training and validation accuracy per epoch"""
    substituted = _substituted(student)
    try:
        run = student.get("train:run")
    except NotCollected as error:  # say why, and what stood in
        note = f" (the harness's standard {', '.join(substituted)} stood in for yours during this run)" if substituted else ""
        fail(f"train(model, loaders, {EPOCHS}, log_dir) on a tiny model: {error}{note}")
    what = f"train(model, loaders, {EPOCHS}, log_dir)"
    # Drawn in the report beside the student's own TensorBoard logs, whatever the checks below say.
    figures.curves(f"What your train() logged in the harness's run ({EPOCHS} epochs, tiny model)",
                   run.get("series") or {})
    if run["changed"] == 0:
        fail(f"{what}: no parameter of the model changed; the optimizer never updated the model passed in")
    training = [(mode, marker) for mode, grad, marker in run["calls"] if grad and marker > 0]
    if not training:
        fail(f"{what}: the model was never run on the training loader with gradients")
    in_eval = sum(not mode for mode, _marker in training)
    if in_eval:
        fail(f"{what}: {in_eval} of the {len(training)} training forward passes ran with the model in eval mode; "
             "call model.train() at the start of every epoch (evaluate() leaves the model in eval mode)")

    series = run["series"]
    if not series:
        fail(f"{what}: no scalar was found in TensorBoard event files under log_dir (write them with "
             "SummaryWriter(log_dir) and close or flush the writer)")
    found = ", ".join(f"{tag!r} ({len(points)} values)" for tag, points in sorted(series.items()))
    loss = _pick(series, "loss", val=False)
    train_acc = _pick(series, "acc", val=False)
    val_acc = _pick(series, "acc", val=True)
    for tags, kind, rule in ((loss, "training loss", "a tag containing 'loss' and neither 'val' nor 'test'"),
                             (train_acc, "training accuracy", "a tag containing 'acc' and neither 'val' nor 'test'"),
                             (val_acc, "validation accuracy", "a tag containing 'acc' and 'val' or 'test'")):
        if not tags:
            fail(f"{what}: no {kind} series ({rule}) among the logged scalars: {found}")
        if not any(_per_epoch(series[t]) for t in tags):
            fail(f"{what}: the {kind} series {', '.join(map(repr, tags))} should hold one value per epoch "
                 f"({EPOCHS} values at distinct steps); logged: {found}")

    if not any(_per_epoch(series[t]) and all(math.isfinite(v) for _s, v in series[t]) for t in loss):
        fail(f"{what}: the training loss is not a finite number at every epoch: "
             f"{ {t: series[t] for t in loss} }")
    if not any(_per_epoch(series[t]) and _accuracy_range(series[t]) for t in train_acc):
        fail(f"{what}: training accuracies should lie in [0, 1] (or [0, 100] as percentages); got "
             f"{ {t: series[t] for t in train_acc} }")
    final = run["val_accuracy"]
    good_val = [t for t in val_acc if _per_epoch(series[t]) and _accuracy_range(series[t])]
    if not good_val:
        fail(f"{what}: validation accuracies should lie in [0, 1] (or [0, 100] as percentages); got "
             f"{ {t: series[t] for t in val_acc} }")
    if not any(_contains_accuracy(series[t], final) for t in good_val):
        fail(f"{what}: the trained model classifies {final:.4f} of the validation items correctly, but none of "
             f"the logged validation accuracies { {t: [round(v, 4) for _s, v in series[t]] for t in good_val} } "
             "says so: log evaluate(model, loaders['val']) after each epoch's training")


def _substituted(student):
    try:
        value = student.get("train:substituted")
        return [str(v) for v in value] if isinstance(value, (list, tuple)) else []
    except Exception:  # noqa: BLE001
        return []


def _is_val(tag):
    tag = tag.lower()
    return "val" in tag or "test" in tag


def _pick(series, word, *, val):
    return sorted(t for t in series if word in t.lower() and _is_val(t) == val)


def _per_epoch(points):
    return len(points) == EPOCHS and len({step for step, _v in points}) == EPOCHS


def _accuracy_range(points):
    values = [v for _s, v in points]
    return all(math.isfinite(v) for v in values) and (all(0 <= v <= 1 for v in values) or
                                                       all(0 <= v <= 100 for v in values))


def _contains_accuracy(points, fraction):
    return any(abs(v - fraction) <= 1e-5 or abs(v - 100 * fraction) <= 1e-3 for _s, v in points)
