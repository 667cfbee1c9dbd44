"""Runs INSIDE the sandbox kernel after the student's cells: collects what the graders need.

`ns` is a snapshot of the student's top-level names, `ex` an Exporter (autograder/artefacts/encode.py),
`probes` the folder of grader-made inputs the student never saw. Nothing here knows the answers:
it only calls the student's code and exports plain data. Each value is exported on its own, so one
failure costs only the checks that need it. The student's `svm` object never leaves the sandbox:
only its class name, C and fitted coefficients do; the grader refits its own LinearSVC.

Stand-in models hand the student's functions to the grader's inputs and record what they receive:
- S1: a model that returns grader-chosen ImageNet scores and records the batch it was given and
  whether it was in eval mode (no VGG16 needed: the answer and the preprocessing are both checked).
- S4: the harness's own relu7 model (built from the weight store's VGG16, independent of the
  student's VGG16relu7), wrapped to record every batch it is fed and what it returned.
"""
import os

import numpy as np
import torch
from PIL import Image
from torch import nn
from torchvision import datasets, models

UPSTREAM_ITEMS = (0, -1)   # same list as expected.py / test_scene15.py
GLOBALS = ("vgg16_param_count", "vgg16_output_size", "X_train", "X_test", "svm_score", "C_scores", "best_C")


def harvest(ns, ex, probes):
    torch.manual_seed(0)
    get = lambda name: require(ns, name)  # noqa: E731  (require comes from encode.py)

    # Globals, as the student left them (before anything below could touch them).
    for name in GLOBALS:
        ex.value(name, lambda: get(name))
    for name in ("y_train", "y_test"):
        ex.value(name, lambda: _labels(get(name)))
    # S6: the fitted classifier, as plain data only.
    ex.value("svm:type", lambda: type(get("svm")).__module__ + "." + type(get("svm")).__qualname__)
    ex.value("svm:C", lambda: get("svm").C)
    ex.value("svm:coef", lambda: get("svm").coef_)
    ex.value("svm:intercept", lambda: get("svm").intercept_)
    ex.value("svm:classes", lambda: _labels(get("svm").classes_))

    # S1: predict_imagenet on unseen images (one RGB, one grayscale) with a recording stand-in model.
    logits = torch.from_numpy(np.load(os.path.join(probes, "predict_logits.npy")))
    for row, file in enumerate(sorted(os.listdir(os.path.join(probes, "predict")))):
        model = _ScoreModel(logits[row])
        path = os.path.join(probes, "predict", file)
        ex.value(f"predict:{file}", lambda: get("predict_imagenet")(_load_image(path), model))
        ex.value(f"predict:{file}:calls", lambda: model.calls)

    # The harness's VGG16 (weight store) and its own relu7 model, built from the VGG16's modules
    # before the student's class sees it (a class that edits the VGG16 in place cannot change it).
    vgg16 = pretrained(models.vgg16, models.VGG16_Weights.IMAGENET1K_V1)  # noqa: F821 (harvest_common.py)
    harness_relu7 = _Relu7(vgg16).eval()

    # S4: extract_features on an unseen grayscale dataset with the harness's relu7 model, so a
    # VGG16relu7 mistake does not cost S4 too.
    recorder = _Recorder(harness_relu7)
    probe_set = datasets.ImageFolder(os.path.join(probes, "extract_set"), loader=_load_image)
    ex.value("extract:probe", lambda: get("extract_features")(probe_set, recorder))
    ex.value("extract:inputs", lambda: recorder.inputs)
    ex.value("extract:outputs", lambda: recorder.outputs)

    # S3: the student's class wrapped around the harness's VGG16, in eval mode, on a grader-made batch.
    built = {}

    def build():
        cls = get("VGG16relu7")
        if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
            raise TypeError(f"`VGG16relu7` is not an nn.Module subclass (it is {type(cls).__name__})")
        built["model"] = cls(vgg16).eval()
        return True

    ex.value("relu7:built", build)
    batch = torch.from_numpy(np.load(os.path.join(probes, "relu7_input.npy")))
    ex.value("relu7:output", lambda: _forward(_built(built), batch))

    # S5's upstream: the student's own extract_features and VGG16relu7 on a few items of each split.
    # Costly (VGG16 on each item), and needed only where X_<split> is not the reference's: the
    # graders ask for it (test_scene15.requested_values).
    data = _data_dir()
    for split in ("train", "test"):
        ex.on_request(f"upstream:X_{split}", lambda split=split: get("extract_features")(
            _subset(os.path.join(data, split)), _built(built)))
    ex.write()


class _ScoreModel(nn.Module):
    """Stands in for VGG16 in S1: fixed ImageNet scores, and a record of each call."""

    def __init__(self, scores):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))
        self.scores = scores
        self.calls = []

    def forward(self, x):
        self.calls.append((torch.Tensor.detach(x).clone(), bool(self.training)))
        if x.dim() != 4 or x.shape[1] != 3:
            raise RuntimeError(f"VGG16 expects a batch of 3-channel images (N, 3, H, W); got shape {tuple(x.shape)}")
        return self.scores.to(x.dtype).unsqueeze(0).repeat(x.shape[0], 1) * self.scale


class _Relu7(nn.Module):
    """The harness's relu7 model: features, avgpool, flatten, fc6-relu6-dropout-fc7-relu7."""

    def __init__(self, vgg16):
        super().__init__()
        self.features = vgg16.features
        self.avgpool = vgg16.avgpool
        self.head = nn.Sequential(*list(vgg16.classifier.children())[:5])

    def forward(self, x):
        return self.head(torch.flatten(self.avgpool(self.features(x)), 1))


class _Recorder(nn.Module):
    """Wraps a model; records every batch it is fed and every output it returns."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.inputs, self.outputs = [], []

    def forward(self, x):
        self.inputs.append(torch.Tensor.detach(x).clone())
        y = self.inner(x)
        self.outputs.append(torch.Tensor.detach(y).clone())
        return y


def _built(built):
    if "model" not in built:
        raise RuntimeError("VGG16relu7(vgg16) could not be built (see the VGG16relu7 check)")
    return built["model"]


@torch.no_grad()
def _forward(model, batch):
    return model(batch.clone())


def _load_image(path):
    """The image as stored: the 15 Scene images are grayscale (mode "L")."""
    with open(path, "rb") as handle:
        image = Image.open(handle)
        image.load()
    return image


def _data_dir():
    """data/scene15 in the sandbox's work folder (HOME), wherever the student's cwd is now."""
    for base in (os.environ.get("HOME", ""), os.getcwd()):
        candidate = os.path.join(base, "data", "scene15")
        if os.path.isdir(candidate):
            return candidate
    return os.path.join("data", "scene15")


def _subset(folder):
    """An ImageFolder of grayscale PIL images over `folder`, holding only UPSTREAM_ITEMS."""
    dataset = datasets.ImageFolder(folder, loader=_load_image)
    dataset.samples = [dataset.samples[i] for i in UPSTREAM_ITEMS]
    dataset.imgs = dataset.samples
    dataset.targets = [label for _path, label in dataset.samples]
    return dataset


def _labels(value):
    """Labels as plain data: numpy string/object arrays become lists (they cannot be exported)."""
    if isinstance(value, np.ndarray) and value.dtype.kind in "UOS":
        return [str(v) if not isinstance(v, (int, np.integer)) else int(v) for v in value.tolist()]
    return value
