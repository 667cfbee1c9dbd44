"""Runs INSIDE the sandbox kernel after the student's cells: collects what the graders need.

`ns` is a snapshot of the student's top-level names, `ex` an Exporter (autograder/artefacts/encode.py),
`probes` the folder of grader-made inputs the student never saw. Nothing here knows the answers:
it only calls the student's code and exports plain data. Each value is exported on its own, so one
failure costs only the checks that need it.
"""
import copy
import hashlib
import json
import os

import numpy as np
import torch
from PIL import Image
from torch import nn
from torchvision import models


class _ProbeFolder(torch.utils.data.Dataset):
    """ImageFolder-like (classes, class_to_idx, samples, targets) over images the grader already
    preprocessed: no harness transform runs here, where the student may have patched torch."""

    def __init__(self, probes):
        self.images = torch.from_numpy(np.load(os.path.join(probes, "extract_input.npy")))
        with open(os.path.join(probes, "extract_meta.json")) as handle:
            meta = json.load(handle)
        self.classes = list(meta["classes"])
        self.class_to_idx = {name: i for i, name in enumerate(self.classes)}
        self.samples = [(os.path.join(probes, path), int(label)) for path, label in meta["samples"]]
        self.imgs = self.samples
        self.targets = [label for _path, label in self.samples]

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, index):
        return self.images[index].clone(), self.targets[index]


def harvest(ns, ex, probes):
    torch.manual_seed(0)
    get = lambda name: require(ns, name)  # noqa: E731  (require comes from encode.py)

    # Globals, as the student left them.
    for name in ("train_features", "test_features", "similarities", "accuracy", "misclassified",
                 "most_dissimilar"):
        ex.value(name, lambda: get(name))

    # F1: the student's transform on images it never saw.
    transform_dir = os.path.join(probes, "transform")
    for file in sorted(os.listdir(transform_dir)):
        path = os.path.join(transform_dir, file)
        ex.value(f"transform:{file}", lambda: get("transform")(Image.open(path).convert("RGB")))

    # F2: what each dataset holds, file contents identified by their hash.
    for name in ("trainset", "testset"):
        ex.value(f"{name}:summary", lambda: _describe_dataset(get(name)))

    # F3: the student's network (a copy, eval mode) on a grader-made batch.
    batch = torch.from_numpy(np.load(os.path.join(probes, "network_input.npy")))
    ex.value("network:output", lambda: _forward(get("network"), batch))

    # F4: the student's extract() on another dataset (other images, another class count) and the
    # harness's own network, so an F3 mistake does not cost F4 too.
    ex.value("extract:probe", lambda: get("extract")(_ProbeFolder(probes), _harness_network()))
    # F4 globals, judged on the student's own upstream: the handout's extraction applied by the
    # harness to the student's datasets and network. Costly (every image through the network), and
    # needed only where the student's features are not the reference's: the graders ask for it.
    for split in ("train", "test"):
        ex.on_request(f"upstream:{split}_features",
                      lambda split=split: _upstream_features(get(f"{split}set"), get("network")))
    ex.write()


def _describe_dataset(dataset):
    summary = {"len": len(dataset)}
    summary["classes"] = [str(c) for c in getattr(dataset, "classes", [])] or None
    samples = getattr(dataset, "samples", None) or getattr(dataset, "imgs", None)
    if samples is not None:
        rows = []
        for path, label in list(samples)[:1000]:
            with open(path, "rb") as handle:
                digest = hashlib.sha256(handle.read()).hexdigest()
            rows.append([os.path.basename(os.path.dirname(path)), os.path.basename(path), int(label), digest])
        summary["samples"] = rows
    targets = getattr(dataset, "targets", None)
    if targets is not None:  # ImageFolder keeps them: no need to run the student's transform
        summary["labels"] = [int(t) for t in list(targets)[:1000]]
    else:
        summary["labels"] = [int(dataset[i][1]) for i in range(min(len(dataset), 1000))]
    return summary


@torch.no_grad()
def _forward(network, batch):
    network = copy.deepcopy(network).eval()
    return network(batch.clone())


def _harness_network():
    network = pretrained(models.resnet18, models.ResNet18_Weights.IMAGENET1K_V1)  # noqa: F821 (harvest_common.py)
    network.fc = nn.Identity()
    return network.eval()


@torch.no_grad()
def _upstream_features(dataset, network):
    network = copy.deepcopy(network).eval()
    features = {}
    for i in range(len(dataset)):
        image, label = dataset[i]
        features[int(label)] = network(torch.as_tensor(image).unsqueeze(0)).reshape(-1)
    return features
