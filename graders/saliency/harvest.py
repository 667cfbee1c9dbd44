"""Runs INSIDE the sandbox kernel after the student's cells: collects what the graders need.

`ns` is a snapshot of the student's top-level names, `ex` an Exporter (autograder/artefacts/encode.py),
`probes` the folder of grader-made inputs the student never saw. Nothing here knows the answers:
it only calls the student's code and exports plain data. Each value is exported on its own, so one
failure costs only the checks that need it.

M1: the student's compute_saliency on the cases of probes/m1_cases.json (hidden images; the
harness's VGG16 with the ImageNet weights and a tiny grader-made CNN with the same call interface,
model(x) -> (N, classes) scores), each call on a fresh copy of the input, which is exported after
the call; fingerprints of each model (parameter values, requires_grad, train/eval mode of every
module) before and after all the calls on it.
M2: the student's `saliency_maps` as left, and (for "no double penalty") the student's own
compute_saliency applied by the harness to the handout's preprocessing of every My-Images file
with the harness's VGG16.
"""
import json
import os
import zlib

import numpy as np
import torch
from PIL import Image
from torch import nn
from torchvision import models, transforms

_PREPROCESS = transforms.Compose([  # the template's given preprocessing, for harness-made inputs
    transforms.Resize((224, 224)), transforms.ToTensor(),
    transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
])


def harvest(ns, ex, probes):
    torch.manual_seed(0)
    get = lambda name: require(ns, name)  # noqa: E731  (require comes from encode.py)

    # M2: the global, as the student left it.
    ex.value("saliency_maps", lambda: get("saliency_maps"))

    with open(os.path.join(probes, "m1_cases.json"), encoding="utf-8") as handle:
        cases = json.load(handle)

    # The tiny CNN first (cheap), then VGG16, each fingerprinted around every call made on it.
    tiny = _tiny_net(os.path.join(probes, "tiny_net.npz"))
    _run_cases(ex, get, probes, "tiny", tiny, [c for c in cases if c["model"] == "tiny"])

    vgg16 = ex.value("harness:vgg16", _harness_vgg16)  # None (and the error recorded) if it fails
    if vgg16 is None:
        ex.write()
        return

    def upstream_maps():
        folder = _my_images(probes)
        return {file: get("compute_saliency")(vgg16, _load(os.path.join(folder, file)))
                for file in sorted(os.listdir(folder)) if file.endswith(".jpg")}

    _run_cases(ex, get, probes, "vgg16", vgg16, [c for c in cases if c["model"] == "vgg16"],
               before_cases=lambda: ex.value("upstream:saliency_maps", upstream_maps))
    ex.write()


def _run_cases(ex, get, probes, model_name, model, cases, before_cases=None):
    ex.value(f"M1:{model_name}:state_before", lambda: _fingerprint(model))
    if before_cases is not None:
        before_cases()
    for case in cases:
        image = torch.from_numpy(np.load(os.path.join(probes, case["image"])))
        argument = image.clone()
        args = (model, argument) if case["target"] is None else (model, argument, int(case["target"]))
        ex.value(f"M1:{case['name']}", lambda: get("compute_saliency")(*args))
        ex.value(f"M1:{case['name']}:input_after", lambda: argument)
    ex.value(f"M1:{model_name}:state_after", lambda: _fingerprint(model))


def _tiny_architecture():
    """The grader's tiny CNN: 3 channels in, 10 class scores out, any input size."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d((4, 4)), nn.Flatten(), nn.Linear(16 * 4 * 4, 10),
    )


def _tiny_net(weights_file):
    """The tiny CNN with the probes' weights, in eval mode (expected.py builds the reference's copy
    with this same function)."""
    net = _tiny_architecture()
    with np.load(weights_file, allow_pickle=False) as state:
        net.load_state_dict({key: torch.from_numpy(state[key]) for key in state.files})
    return net.eval()


def _harness_vgg16():
    """VGG16 with the store's ImageNet weights, eval mode, parameters frozen (the maps are
    gradients with respect to the image; frozen weights save memory and time)."""
    model = pretrained(models.vgg16, models.VGG16_Weights.IMAGENET1K_V1).eval()  # noqa: F821 (harvest_common.py)
    model.requires_grad_(False)
    return model


def _my_images(probes):
    """data/saliency/My-Images of the sandbox's work folder (the student may have changed the cwd)."""
    work = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(probes))), "work")
    for folder in (os.path.join(work, "data", "saliency", "My-Images"),
                   os.path.join("data", "saliency", "My-Images")):
        if os.path.isdir(folder):
            return folder
    raise FileNotFoundError("data/saliency/My-Images not found in the sandbox")


def _load(path):
    return _PREPROCESS(Image.open(path).convert("RGB")).unsqueeze(0)


def _fingerprint(model):
    """Parameter and buffer values (a CRC-32 checksum per entry), requires_grad per parameter, and
    the train/eval flag of every module."""
    values = {}
    for name, tensor in model.state_dict().items():
        data = tensor.detach().cpu().contiguous().numpy().reshape(-1)
        values[name] = f"{tuple(tensor.shape)}|{tensor.dtype}|{zlib.crc32(memoryview(data).cast('B')):08x}"
    return {
        "values": values,
        "requires_grad": {name: bool(p.requires_grad) for name, p in model.named_parameters()},
        "training": {name or "(the model)": bool(m.training) for name, m in model.named_modules()},
    }
