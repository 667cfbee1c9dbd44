"""The reference's values for the inception graders, under the same names the harvest uses.

Runs in the grader's process with the reference solution, on the same data, weights and probes as
the sandbox, and on the very same grader-made models and loaders (the classes and set-ups of
harvest.py, imported here). Its output is cached per (data, weights, probes, reference source): see
autograder/workspace.py. Besides each run's result it exports the reference's whole trajectory
(the weights at the start of every validation phase), so that the graders can accept either
convention for ties of validation accuracy and say which epoch a student's weights belong to.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from graders.inception import harvest as h
from reference import inception as ref


def build_probe_inputs(probes: Path) -> None:
    """The real-model batches: the handout's 'val' preprocessing of the probe photographs."""
    arrays = {}
    for split in ("train", "val"):
        files = sorted((probes / "real" / split).iterdir())
        batch = torch.stack([ref.data_transforms["val"](Image.open(f).convert("RGB")) for f in files])
        arrays[f"{split}_x"] = batch.numpy()
        arrays[f"{split}_y"] = np.array([int(f.stem.split("_")[1]) for f in files], np.int64)
    np.savez(probes / "real_batches.npz", **arrays)


def compute(ex, data_dir: Path, probes: Path) -> None:
    probes = Path(probes)
    solved = ref.solve(data_dir)
    ex.value("class_names", lambda: solved["class_names"])
    _i1(ex)
    _i2(ex, probes)
    _i3(ex, probes)
    _i4(ex, probes)
    _i5(ex, probes)
    ex.value("I6:output", lambda: _i6_output(probes))
    ex.value("I6:scrambled", lambda: _i6_output(probes, scrambled=True))
    ex.write()


def _i1(ex):
    ex.value("I1:initial", lambda: h.requires_grad_map(h.i1_model()))
    for flag in (False, True):
        def after(flag=flag):
            model = h.i1_model()
            ref.set_parameter_requires_grad(model, flag)
            return h.requires_grad_map(model)
        ex.value(f"I1:after_{str(flag).lower()}", after)


def _i2(ex, probes: Path):
    batch = h._t(h._load_npz(probes / "real_batches.npz")["val_x"])
    for n, feature_extract in h.I2_CASES:
        key = f"I2:{n}:{str(feature_extract).lower()}"
        model, input_size = ref.initialize_model(n, feature_extract)
        ex.value(f"{key}:input_size", lambda: input_size)
        ex.value(f"{key}:shapes", lambda: h.state_shapes(model))
        ex.value(f"{key}:trainable", lambda: h.requires_grad_map(model))
        ex.value(f"{key}:samples", lambda: h.state_samples(model))
        logits, features = h.logits_and_features(model, batch)
        ex.value(f"{key}:features", lambda: features)


def _i3(ex, probes: Path):
    from graders.inception.fixture_data import SOLID_COLOUR
    folder = probes / "transform"
    for file in sorted(os.listdir(folder)):
        if file != "solid.png":
            ex.value(f"I3:val:{file}", lambda: ref.data_transforms["val"](Image.open(folder / file).convert("RGB")))
    mean, std = np.array(ref.IMAGENET_MEAN), np.array(ref.IMAGENET_STD)
    ex.value("I3:solid", lambda: (np.array(SOLID_COLOUR) / 255.0 - mean) / std)


def _i4(ex, probes: Path):
    # Tiny Inception-like model, is_inception=True: accuracy must peak at one epoch before the last.
    model, loaders, criterion, optimizer = h.tiny_setup(probes, aux=True)
    model.recorder = None
    initial = h.module_state(model)
    model, history = ref.train_model(model, loaders, criterion, optimizer, h.TINY_EPOCHS, True)
    peak = max(history)
    if history.count(peak) != 1 or history.index(peak) == len(history) - 1:
        raise RuntimeError(f"the tiny I4 run's validation accuracy must peak once before the last epoch: {history}")
    ex.value("I4:tiny:history", lambda: history)
    ex.value("I4:tiny:weights", lambda: h.module_state(model))
    ex.value("I4:tiny:trajectory", lambda: loaders["val"].snapshots)
    ex.value("I4:tiny:initial", lambda: initial)
    data = h._load_npz(probes / "tiny.npz")
    ex.value("I4:tiny:train_x", lambda: data["train_x"])
    ex.value("I4:tiny:train_y", lambda: data["train_y"])

    plain, plain_loaders, plain_criterion, plain_optimizer = h.tiny_setup(probes, aux=False)
    plain_initial = h.module_state(plain)
    plain, plain_history = ref.train_model(plain, plain_loaders, plain_criterion, plain_optimizer,
                                           h.PLAIN_EPOCHS, False)
    ex.value("I4:plain:history", lambda: plain_history)
    ex.value("I4:plain:weights", lambda: h.module_state(plain))
    ex.value("I4:plain:trajectory", lambda: plain_loaders["val"].snapshots)
    ex.value("I4:plain:initial", lambda: plain_initial)

    real, real_loaders, real_criterion, real_optimizer = h.real_setup(probes)
    real_initial = h.module_state(real, h.HEADS)
    real, real_history = ref.train_model(real, real_loaders, real_criterion, real_optimizer, h.REAL_EPOCHS, True)
    ex.value("I4:real:history", lambda: real_history)
    ex.value("I4:real:heads", lambda: h.module_state(real, h.HEADS))
    ex.value("I4:real:trajectory", lambda: real_loaders["val"].snapshots)
    ex.value("I4:real:initial", lambda: real_initial)


def _i5(ex, probes: Path):
    for case in h.I5_CASES:
        loader, num_classes = h.i5_loader(probes, case)
        matrix = ref.confusion_matrix(h.ScoreModel().eval(), loader, num_classes)
        if torch.equal(matrix, matrix.T):
            raise RuntimeError(f"I5 case {case}: a symmetric confusion matrix cannot tell rows from columns")
        ex.value(f"I5:{case}", lambda: matrix)


@torch.no_grad()
def _i6_output(probes: Path, scrambled: bool = False):
    """The I6 model's eval output; scrambled: after the harvest overwrote the original (see there)."""
    model, _ = h.tiny_model(probes, aux=True, norm=True, name="tiny_norm")
    if scrambled:
        for tensor in list(model.parameters()) + list(model.buffers()):
            if tensor.dtype.is_floating_point:
                tensor.fill_(0.5)
    return model.eval()(h.i6_input(probes))
