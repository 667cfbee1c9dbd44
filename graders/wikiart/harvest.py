"""Runs INSIDE the sandbox kernel after the student's cells: collects what the graders need.

`ns` is a snapshot of the student's top-level names, `ex` an Exporter (autograder/artefacts/encode.py),
`probes` the folder of grader-made inputs the student never saw. Nothing here knows the answers:
it calls the student's functions on hidden inputs and exports plain data (numbers, strings, arrays,
SHA-256 digests of parameters). expected.py imports the probe helpers below and applies them to the
reference, in the grader's process, so both sides are measured the same way.

- W1: `build_alexnet(n, variant)` for n = 3 and 7 and both variants: every parameter's name, shape,
  digest and requires_grad (the grader matches digests against the weight store's AlexNet), the
  Linear layers in the order the forward pass calls them (forward hooks), the eval-mode output on
  two grader images, and the weight and bias of the last Linear called (the new layer).
- W2: `criterion` on grader scores/labels; `make_optimizer(model, lr)` on a tiny AlexNet-shaped model
  (same `features` / `avgpool` / `classifier[0..6]` layout), once all trainable and once with the
  features frozen: class, lr of every group, which of the model's parameters it holds (identity).
- W3: `evaluate(model, loader)` with a recording model whose predictions are known: the result, and
  per forward pass whether the model was in training mode and whether autograd was recording (read
  from the output's requires_grad, which no patched Python function can fake).
- W4: `train(model, loaders, 2, log_dir)` on the tiny model, log_dir a fresh folder under /tmp; the
  event files are read back here with tensorboard's EventAccumulator (writers the student left open
  are flushed first); also which parameters changed, the mode of every forward pass on training
  inputs, and the trained model's validation accuracy. Where the student's own criterion,
  make_optimizer or evaluate cannot be used at all (raises, returns nothing usable), the harness's
  standard one stands in during this run, so a W2/W3 mistake does not cost W4 too.
"""
import copy
import gc
import hashlib
import math
import os
import sys
import tempfile
import types

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

CLASS_COUNTS = (3, 7)
VARIANTS = ("last", "last_two")
PROBE_LR = 0.0123
EPOCHS = 2
EVALUATE_BATCH = {"a": 4, "b": 3}       # fixture_data.EVALUATE_DESIGN
TRAIN_BATCH, VAL_BATCH = 4, 3


def harvest(ns, ex, probes):
    torch.manual_seed(0)
    _make_picklable()
    get = lambda name: require(ns, name)  # noqa: E731,F821  (require comes from encode.py)
    load = lambda name: torch.from_numpy(np.load(os.path.join(probes, name)))  # noqa: E731

    # W1: both variants, two class counts, on the grader's images.
    batch = load("alexnet_input.npy")
    for variant in VARIANTS:
        for n in CLASS_COUNTS:
            _grad_on()
            ex.value(f"build_alexnet:{variant}:{n}", lambda: describe_alexnet(get("build_alexnet"), n, variant, batch))
            gc.collect()

    # W2
    _grad_on()
    logits, labels = load("criterion_logits.npy"), load("criterion_labels.npy")
    loss = ex.value("criterion:probe", lambda: loss_probe(get("criterion"), logits, labels))
    optimizers = [ex.value(f"make_optimizer:{config}", lambda: optimizer_probe(get("make_optimizer"), config))
                  for config in ("all", "frozen_features")]

    # W3
    _grad_on()
    evaluations = [ex.value(f"evaluate:{key}", lambda: evaluate_probe(get("evaluate"), probes, key))
                   for key in EVALUATE_BATCH]

    # W4, on the student's own upstream where it is usable, else on the harness's standard one.
    standard = {}
    if not (isinstance(loss, dict) and loss.get("differentiable")):
        standard["criterion"] = nn.CrossEntropyLoss()
    if any(o is None for o in optimizers):
        standard["make_optimizer"] = standard_make_optimizer
    if any(e is None or not _is_number(e.get("accuracy")) for e in evaluations):
        standard["evaluate"] = standard_evaluate
    ex.value("train:substituted", lambda: sorted(standard))
    _grad_on()
    ex.value("train:run", lambda: _with_globals(get("train"), standard, lambda: train_probe(get("train"), probes)))
    ex.write()


# -- W1 -------------------------------------------------------------------------------------------
def digest(tensor):
    """SHA-256 of a tensor's bytes (dtype and shape are part of the comparison through the bytes)."""
    tensor = torch.Tensor.contiguous(torch.Tensor.cpu(torch.Tensor.detach(tensor)))
    return hashlib.sha256(torch.Tensor.numpy(tensor).tobytes()).hexdigest()


def param_table(model):
    return [[name, [int(s) for s in p.shape], digest(p), bool(p.requires_grad)]
            for name, p in model.named_parameters()]


def describe_alexnet(build, n, variant, batch):
    model = build(n, variant)
    if not isinstance(model, nn.Module):
        raise TypeError(f"build_alexnet({n}, {variant!r}) returned {type(model).__name__}, not an nn.Module")
    table = param_table(model)
    model.eval()
    called = []
    hooks = [m.register_forward_hook(lambda module, i, o: called.append(module))
             for m in model.modules() if isinstance(m, nn.Linear)]
    try:
        with _NoGrad():
            output = model(batch.clone())
    finally:
        for hook in hooks:
            hook.remove()
    head = called[-1] if called else None
    return {
        "params": table,
        "linears": [[int(m.in_features), int(m.out_features)] for m in called],
        "output": output,
        "head_weight": head.weight.detach().clone() if head is not None else None,
        "head_bias": head.bias.detach().clone() if head is not None and head.bias is not None else None,
    }


# -- W2 -------------------------------------------------------------------------------------------
class MiniAlexNet(nn.Module):
    """AlexNet's layout at toy size (features / avgpool / classifier[0..6]); records every forward.

    No dropout (p=0) and no batch norm: the output does not depend on the mode, so accuracies
    computed in either mode agree.
    """

    def __init__(self, num_classes=3):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, kernel_size=3, padding=1), nn.ReLU(inplace=True),
                                      nn.MaxPool2d(kernel_size=2))
        self.avgpool = nn.AdaptiveAvgPool2d((2, 2))
        self.classifier = nn.Sequential(nn.Dropout(p=0.0), nn.Linear(16, 12), nn.ReLU(inplace=True),
                                        nn.Dropout(p=0.0), nn.Linear(12, 12), nn.ReLU(inplace=True),
                                        nn.Linear(12, num_classes))
        self.calls = []

    def forward(self, x):
        out = self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))
        marker = float(x[0, 0, 0, 0]) if x.dim() == 4 and len(x) else float("nan")
        self.calls.append([bool(self.training), bool(out.requires_grad), marker])
        return out


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return MiniAlexNet(3)


def loss_probe(criterion, logits, labels):
    scores = logits.clone().requires_grad_(True)
    value = criterion(scores, labels.clone())
    differentiable = isinstance(value, torch.Tensor) and value.requires_grad and value.numel() == 1
    return {"value": float(torch.Tensor.detach(value)) if isinstance(value, torch.Tensor) else value,
            "differentiable": bool(differentiable), "type": type(value).__name__}


def optimizer_probe(make_optimizer, config):
    model = tiny_model()
    if config == "frozen_features":
        for p in model.features.parameters():
            p.requires_grad_(False)
    optimizer = make_optimizer(model, PROBE_LR)
    groups = list(optimizer.param_groups)
    held = [id(p) for g in groups for p in g["params"]]
    params = list(model.parameters())
    trainable = {id(p) for p in params if p.requires_grad}
    frozen = {id(p) for p in params if not p.requires_grad}
    return {"class": type(optimizer).__name__, "is_sgd": isinstance(optimizer, torch.optim.SGD),
            "lrs": [float(g.get("lr", float("nan"))) for g in groups],
            "n_trainable": len(trainable), "n_frozen": len(frozen),
            "trainable_held": len(trainable & set(held)), "frozen_held": len(frozen & set(held)),
            "foreign": len(set(held) - trainable - frozen), "duplicates": len(held) - len(set(held))}


def standard_make_optimizer(model, lr):
    return torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr)


# -- W3 -------------------------------------------------------------------------------------------
class RecordingModel(nn.Module):
    """Returns its input as the class scores (so predictions are known) and records, per forward,
    whether it was in training mode and whether autograd recorded the output."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.calls = []

    def forward(self, x):
        out = x * self.scale
        self.calls.append([bool(self.training), bool(out.requires_grad)])
        return out


def evaluate_probe(evaluate, probes, key):
    inputs = torch.from_numpy(np.load(os.path.join(probes, f"evaluate_{key}_inputs.npy")))
    labels = torch.from_numpy(np.load(os.path.join(probes, f"evaluate_{key}_labels.npy")))
    loader = DataLoader(TensorDataset(inputs, labels), batch_size=EVALUATE_BATCH[key], shuffle=False)
    model = RecordingModel()
    model.train()
    accuracy = evaluate(model, loader)
    if isinstance(accuracy, torch.Tensor):
        accuracy = torch.Tensor.detach(accuracy)
    return {"accuracy": accuracy, "calls": [list(c) for c in model.calls]}


def standard_evaluate(model, loader):
    """Accuracy, compared in numpy: a student's patched torch.Tensor.__eq__ cannot change it."""
    model.eval()
    correct = total = 0
    with _NoGrad():
        for inputs, labels in loader:
            predicted = torch.Tensor.numpy(torch.Tensor.detach(model(inputs)).argmax(dim=1))
            correct += int(np.sum(predicted == torch.Tensor.numpy(labels)))
            total += len(labels)
    return correct / total


# -- W4 -------------------------------------------------------------------------------------------
def train_probe(train, probes):
    load = lambda name: torch.from_numpy(np.load(os.path.join(probes, name)))  # noqa: E731
    loaders = {
        "train": DataLoader(TensorDataset(load("train_images.npy"), load("train_labels.npy")),
                            batch_size=TRAIN_BATCH, shuffle=False),
        "val": DataLoader(TensorDataset(load("val_images.npy"), load("val_labels.npy")),
                          batch_size=VAL_BATCH, shuffle=False),
    }
    model = tiny_model(1)
    before = [digest(p) for p in model.parameters()]
    log_dir = tempfile.mkdtemp(prefix="wikiart-log-")
    returned = train(model, loaders, EPOCHS, log_dir)
    trained = returned if isinstance(returned, nn.Module) else model
    calls = [list(c) for c in getattr(trained, "calls", model.calls)]
    after = [digest(p) for p in trained.parameters()]
    _flush_writers()
    return {
        "series": read_scalars(log_dir),
        "changed": sum(a != b for a, b in zip(before, after)),
        "n_params": len(before),
        "calls": calls,
        "val_accuracy": standard_evaluate(copy.deepcopy(trained), loaders["val"]),
        "returned_module": isinstance(returned, nn.Module),
    }


def read_scalars(log_dir):
    """Every scalar series under log_dir: '<sub folder>/<tag>' (or '<tag>') -> [(step, value), ...]."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    series = {}
    for root, _dirs, files in sorted(os.walk(log_dir)):
        if not any("tfevents" in f for f in files):
            continue
        accumulator = EventAccumulator(root, size_guidance={"scalars": 0})
        accumulator.Reload()
        relative = os.path.relpath(root, log_dir)
        for tag in accumulator.Tags().get("scalars", []):
            name = tag if relative == "." else f"{relative}/{tag}"
            series[name] = [(int(e.step), float(e.value)) for e in accumulator.Scalars(tag)]
    return series


def _flush_writers():
    """Flush SummaryWriters the student left open (they flush on their own only every 120 s)."""
    module = sys.modules.get("torch.utils.tensorboard.writer")
    if module is None:
        return
    for obj in gc.get_objects():
        try:
            if issubclass(type(obj), module.SummaryWriter):
                obj.flush()
        except Exception:  # noqa: BLE001 - a closed or broken writer has nothing more to give
            pass


class _NoGrad:
    """torch.no_grad without its Python bookkeeping: torch.no_grad restores the mode that
    torch.is_grad_enabled() reports, which a student's patch could make it leave switched off."""

    def __enter__(self):
        self.previous = torch._C.is_grad_enabled()
        torch._C._set_grad_enabled(False)

    def __exit__(self, *exc):
        torch._C._set_grad_enabled(self.previous)


def _grad_on():
    """Autograd on before each probe, whatever the student's cells (or patches) left behind."""
    torch._C._set_grad_enabled(True)


def _with_globals(function, replacements, run):
    """run() with some of function's global names replaced, restored afterwards."""
    space = getattr(function, "__globals__", None)
    if not replacements or not isinstance(space, dict):
        return run()
    saved = {name: space[name] for name in replacements if name in space}
    space.update(replacements)
    try:
        return run()
    finally:
        for name in replacements:
            if name in saved:
                space[name] = saved[name]
            else:
                space.pop(name, None)


def _is_number(value):
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return math.isfinite(value)
    if isinstance(value, torch.Tensor):
        return value.numel() == 1
    if isinstance(value, (np.ndarray, np.generic)):
        return np.size(value) == 1
    return False


def _make_picklable():
    """Let the student's code pickle the grader's models (torch.save(model)): their module must be importable."""
    name = globals().get("__name__", "_autograder_harvest")
    if name not in sys.modules:
        module = types.ModuleType(name)
        module.__dict__.update({"MiniAlexNet": MiniAlexNet, "RecordingModel": RecordingModel})
        sys.modules[name] = module
