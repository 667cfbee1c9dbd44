"""The reference's values for the saliency graders, under the same names the harvest uses.

Runs in the grader's process with the reference solution, on the same data, weights and probes as
the sandbox. Its output is cached per (data, weights, probes, reference source): see
autograder/workspace.py. The tiny CNN is built by the harvest's own function from the weights in
the probes, so both sides hold the same model.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision import transforms

from graders.saliency.harvest import _tiny_architecture, _tiny_net
from reference import saliency as ref

TINY_SEED = 587
VGG16_TARGET = 281            # a fixed ImageNet class for the "explicit target" VGG16 case
_TO_INPUT = transforms.Compose([transforms.ToTensor(), transforms.Normalize(ref.IMAGENET_MEAN, ref.IMAGENET_STD)])


def build_probe_inputs(probes: Path) -> None:
    """Network inputs (.npy, 1 x 3 x H x W) of the M1 images, the tiny CNN's weights, and the cases."""
    inputs = {}
    for file in sorted((probes / "m1").glob("*.jpg")):
        tensor = _TO_INPUT(Image.open(file).convert("RGB")).unsqueeze(0)
        np.save(probes / f"m1_{file.stem}.npy", tensor.numpy(), allow_pickle=False)
        inputs[file.stem] = tensor
    net = _make_tiny_weights(probes / "tiny_net.npz", inputs)
    with torch.no_grad():
        wheel_scores = net(inputs["wheel"])[0]
    cases = [
        {"name": "vgg16, 224x224, default target", "model": "vgg16", "image": "m1_clock.npy", "target": None},
        {"name": f"vgg16, 224x224, target={VGG16_TARGET}", "model": "vgg16", "image": "m1_flower.npy",
         "target": VGG16_TARGET},
        {"name": "tiny CNN, 224x224, default target", "model": "tiny", "image": "m1_coins.npy", "target": None},
        {"name": "tiny CNN, 160x192, default target", "model": "tiny", "image": "m1_wheel.npy", "target": None},
        {"name": f"tiny CNN, 160x192, target={int(wheel_scores.argmin())} (its lowest score)", "model": "tiny",
         "image": "m1_wheel.npy", "target": int(wheel_scores.argmin())},
        {"name": "tiny CNN, 160x192, target=0 (not its top class)", "model": "tiny", "image": "m1_hubble.npy",
         "target": 0},
    ]
    (probes / "m1_cases.json").write_text(json.dumps(cases, indent=1))


def _make_tiny_weights(path: Path, inputs: dict) -> torch.nn.Module:
    """Seeded weights (BatchNorm statistics included) for which class 0 is not hubble's top class."""
    for seed in range(TINY_SEED, TINY_SEED + 100):
        torch.manual_seed(seed)
        net = _tiny_architecture()
        batch_norm = net[1]
        with torch.no_grad():
            batch_norm.weight.uniform_(0.5, 1.5)
            batch_norm.bias.normal_(0.0, 0.1)
            batch_norm.running_mean.normal_(0.0, 0.2)
            batch_norm.running_var.uniform_(0.5, 1.5)
        net.eval()
        with torch.no_grad():
            if int(net(inputs["hubble"]).argmax()) != 0:
                break
    np.savez(path, **{key: value.numpy() for key, value in net.state_dict().items()})
    return _tiny_net(path)


def compute(ex, data_dir: Path, probes: Path) -> None:
    cases = json.loads((probes / "m1_cases.json").read_text())
    ex.value("M1:cases", lambda: cases)
    solved = ref.solve(data_dir)
    ex.value("saliency_maps", lambda: solved["saliency_maps"])
    models = {"vgg16": solved["model"], "tiny": _tiny_net(probes / "tiny_net.npz")}
    for case in cases:
        model = models[case["model"]]
        image = torch.from_numpy(np.load(probes / case["image"]))
        ex.value(f"M1:{case['name']}", lambda: ref.compute_saliency(model, image, case["target"]))
        ex.value(f"M1:{case['name']}:input", lambda: image)
        with torch.no_grad():
            top = int(model(image)[0].argmax())
        ex.value(f"M1:{case['name']}:top", lambda: top)
    ex.write()
