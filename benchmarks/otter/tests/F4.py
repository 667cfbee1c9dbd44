"""F4 extract on a dataset it never saw (with a fresh ImageNet ResNet-18); train_features and
test_features: class index -> 512-d feature."""
import json

import numpy as np
import torch
from otter.test_files import test_case
from torch import nn
from torchvision import models

OK_FORMAT = False
name = "F4"
points = 3


class ProbeFolder(torch.utils.data.Dataset):
    """ImageFolder-like over the grader's preprocessed images (as graders/fruits/harvest.py)."""

    def __init__(self):
        self.images = torch.from_numpy(np.load("probes/extract_input.npy"))
        meta = json.load(open("probes/extract_meta.json"))
        self.classes = list(meta["classes"])
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        self.samples = self.imgs = [(path, int(label)) for path, label in meta["samples"]]
        self.targets = [label for _path, label in self.samples]

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, index):
        return self.images[index].clone(), self.targets[index]


def check_features(got, expected, what):
    assert isinstance(got, dict), f"{what}: expected a dict, got {type(got).__name__}"
    assert sorted(got) == sorted(expected), f"{what}: keys {sorted(got)}, expected {sorted(expected)}"
    for label in expected:
        value = np.asarray(got[label], dtype=np.float32).reshape(-1)
        assert value.shape == (512,), f"{what}[{label}]: {value.shape[0]} values, expected 512"
        assert np.allclose(value, expected[label], atol=0, rtol=1e-3), f"{what}[{label}]: wrong feature"


def expected_dict(prefix):
    stored = np.load("expected.npz")
    return {int(key.rsplit(":", 1)[1]): stored[key] for key in stored.files if key.startswith(prefix + ":")}


@test_case(points=2)
def test_extract(extract):
    network = models.resnet18(weights=models.ResNet18_Weights.IMAGENET1K_V1)
    network.fc = nn.Identity()
    got = {int(k): v for k, v in extract(ProbeFolder(), network.eval()).items()}
    check_features(got, expected_dict("extract:probe"), "extract(unseen dataset, network)")


@test_case(points=1)
def test_feature_dicts(train_features, test_features):
    check_features(train_features, expected_dict("train_features"), "`train_features`")
    check_features(test_features, expected_dict("test_features"), "`test_features`")
