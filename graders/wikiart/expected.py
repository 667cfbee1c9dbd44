"""The reference's values for the wikiart graders, under the same names the harvest uses.

Runs in the grader's process with the reference solution, on the same data, weights and probes as
the sandbox, measured with the harvest's own probe helpers (imported from harvest.py). Its output is
cached per (data, weights, probes, reference and expected source): see autograder/workspace.py.
Besides the reference's answers it exports what only the grader may be trusted with: the digests of
the weight store's AlexNet parameters and its relu6 / relu7 activations on the probe images, from
which the graders compute what the student's new layer must output.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision import models

from graders.wikiart import harvest as probe
from reference import wikiart as ref


def build_probe_inputs(probes: Path) -> None:
    """The W1 input batch: the handout's validation preprocessing of the two probe photographs."""
    files = sorted((probes / "alexnet").iterdir())
    batch = torch.stack([ref.data_transforms["val"](Image.open(f).convert("RGB")) for f in files])
    np.save(probes / "alexnet_input.npy", batch.numpy(), allow_pickle=False)


def compute(ex, data_dir: Path, probes: Path) -> None:
    solved = ref.solve(data_dir)  # the reference notebook end to end: loaders, both variants, 1 epoch
    ex.value("classes", lambda: solved["loaders"]["train"].dataset.classes)
    ex.value("solve:val_accuracy", lambda: {v: solved[f"val_accuracy_{v}"] for v in probe.VARIANTS})

    # W1: the weight store's AlexNet, and its activations before the layers the variants replace.
    torch.manual_seed(0)
    pretrained = models.alexnet(weights=models.AlexNet_Weights.IMAGENET1K_V1).eval()
    ex.value("alexnet:pretrained", lambda: probe.param_table(pretrained))
    batch = torch.from_numpy(np.load(probes / "alexnet_input.npy"))
    with torch.no_grad():
        pooled = torch.flatten(pretrained.avgpool(pretrained.features(batch)), 1)
        ex.value("alexnet:penultimate:last", lambda: pretrained.classifier[:6](pooled))       # relu7
        ex.value("alexnet:penultimate:last_two", lambda: pretrained.classifier[:3](pooled))   # relu6
    for variant in probe.VARIANTS:
        for n in probe.CLASS_COUNTS:
            ex.value(f"build_alexnet:{variant}:{n}", lambda: probe.describe_alexnet(ref.build_alexnet, n, variant, batch))

    # W2-W4 on the same probes as the harvest.
    logits = torch.from_numpy(np.load(probes / "criterion_logits.npy"))
    labels = torch.from_numpy(np.load(probes / "criterion_labels.npy"))
    ex.value("criterion:probe", lambda: probe.loss_probe(ref.criterion, logits, labels))
    for config in ("all", "frozen_features"):
        ex.value(f"make_optimizer:{config}", lambda: probe.optimizer_probe(ref.make_optimizer, config))
    for key in probe.EVALUATE_BATCH:
        ex.value(f"evaluate:{key}", lambda: probe.evaluate_probe(ref.evaluate, str(probes), key))
    ex.value("train:run", lambda: probe.train_probe(ref.train, str(probes)))
    ex.write()
