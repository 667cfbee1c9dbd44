"""The reference's values for the fruits graders, under the same names the harvest uses.

Runs in the grader's process with the reference solution, on the same data, weights and probes as
the sandbox. Its output is cached per (data, weights, probes, reference source): see
autograder/reference_cache.py.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision import datasets

from reference import fruits as ref


def build_probe_inputs(probes: Path) -> None:
    """Grader-made inputs, preprocessed here so that no harness transform runs in the student's
    kernel (where a patched torch could break it): the network batch, and the unseen dataset."""
    files = sorted((probes / "transform").iterdir())
    batch = torch.stack([ref.transform(Image.open(f).convert("RGB")) for f in files])
    np.save(probes / "network_input.npy", batch.numpy(), allow_pickle=False)
    probe_set = datasets.ImageFolder(str(probes / "extract_set"), transform=ref.transform)
    images = torch.stack([image for image, _label in probe_set])
    np.save(probes / "extract_input.npy", images.numpy(), allow_pickle=False)
    samples = [[str(Path(path).relative_to(probes)), label] for path, label in probe_set.samples]
    (probes / "extract_meta.json").write_text(json.dumps({"classes": probe_set.classes, "samples": samples}))


def compute(ex, data_dir: Path, probes: Path) -> None:
    solved = ref.solve(data_dir)
    for name in ("train_features", "test_features", "similarities", "accuracy", "misclassified",
                 "most_dissimilar"):
        ex.value(name, lambda: solved[name])
    ex.value("classes", lambda: solved["trainset"].classes)
    for file in sorted(os.listdir(probes / "transform")):
        ex.value(f"transform:{file}", lambda: ref.transform(Image.open(probes / "transform" / file).convert("RGB")))
    for split, file_name in (("trainset", "gallery.jpg"), ("testset", "probe.jpg")):
        ex.value(f"{split}:files", lambda: _expected_files(data_dir, solved["trainset"].classes, file_name))
    batch = torch.from_numpy(np.load(probes / "network_input.npy"))
    with torch.no_grad():
        ex.value("network:output", lambda: solved["network"](batch))
    probe_set = datasets.ImageFolder(str(probes / "extract_set"), transform=ref.transform)
    ex.value("extract:probe", lambda: ref.extract(probe_set, ref.make_network()))
    ex.write()


def _expected_files(data_dir: Path, classes: list[str], file_name: str) -> list[list]:
    """[class, file, sha256] of the one image per class each split must hold."""
    rows = []
    for name in classes:
        digest = hashlib.sha256((Path(data_dir) / name / file_name).read_bytes()).hexdigest()
        rows.append([name, file_name, digest])
    return rows
