"""The reference's values for the catsdogs graders, under the same names the harvest uses.

Runs in the grader's process with the reference solution, on the same data, weights and probes as
the sandbox. Its output is cached per (data, weights, probes, reference source): see
autograder/workspace.py. The stand-in models of C4 are the harvest's, repeated here
(the harvest runs as source text in the sandbox and cannot be imported from there).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from reference import catsdogs as ref

from .fixture_data import CAPPED_CATS, CAPPED_DOGS, CONV_LAYER_CASES, RESIDUAL_CHANNELS, RESIDUAL_KERNELS

GRAY_MEAN, GRAY_STD = 0.449, 0.226


def build_probe_inputs(probes: Path) -> None:
    """Grader-made network inputs: two probe photographs, preprocessed as the handout says (RGB for
    `model` and `resnet9`, 1-channel for `gray_model`)."""
    files = sorted((probes / "dataset").rglob("*.jpg"))[:2]
    rgb = torch.stack([ref.preprocess(Image.open(f).convert("RGB")) for f in files])
    np.save(probes / "arrays" / "model_input.npy", rgb.numpy(), allow_pickle=False)
    gray = np.stack([np.asarray(Image.open(f).convert("L").resize((224, 224), Image.BILINEAR), dtype=np.float32)
                     for f in files])[:, None] / 255.0
    np.save(probes / "arrays" / "gray_input.npy", ((gray - GRAY_MEAN) / GRAY_STD).astype(np.float32),
            allow_pickle=False)


def compute(ex, data_dir: Path, probes: Path) -> None:
    def load(name):
        return torch.from_numpy(np.load(probes / "arrays" / f"{name}.npy"))

    solved = ref.solve(data_dir, max_batches=1)

    # C1: one item per probe file (its name tells the label), and the capped folder's counts.
    probe_set = ref.CatsDogs(probes / "dataset")
    ex.value("CatsDogs:items", lambda: [{"file": Path(f).name, "image": probe_set[i][0], "label": probe_set[i][1]}
                                        for i, f in enumerate(probe_set.files)])
    ex.value("CatsDogs:capped", lambda: {"len": min(CAPPED_CATS, 500) + min(CAPPED_DOGS, 500),
                                         "cats": min(CAPPED_CATS, 500), "dogs": min(CAPPED_DOGS, 500)})

    # C2, C8: the ImageNet VGG16 features every model must hold, frozen; the head's size.
    ex.value("vgg16:features", lambda: _parameters(solved["model"].features))
    ex.value("head_parameters", lambda: ref.HEAD_PARAMETERS)
    ex.value("model:trainable", lambda: ref.trainable_parameters(solved["model"]))

    # C3: BCE on the probe predictions.
    ex.value("loss_fn:value", lambda: float(nn.BCELoss()(load("loss_pred"), load("loss_target"))))

    # C4
    ex.value("train_batch:probe", lambda: _train_batch_probe(ref.train_batch, load))
    ex.value("accuracy:probe", lambda: _accuracy_probe(ref.accuracy, load))

    # C5, C6
    for in_ch, out_ch, k in CONV_LAYER_CASES:
        ex.value(f"ConvLayer:{in_ch}_{out_ch}_{k}", lambda: _conv_layer_probe(load, in_ch, out_ch, k))
    ex.value("ConvLayer:scratch_parameters", lambda: sum(p.numel() for p in solved["scratch_model"].parameters()))
    for k in RESIDUAL_KERNELS:
        ex.value(f"ResidualBlock:{k}", lambda: _residual_probe(load, k))
    ex.write()


def _parameters(module: nn.Module) -> list[dict]:
    rows = []
    for parameter in module.parameters():
        values = parameter.detach().double().reshape(-1)
        rows.append({"shape": list(parameter.shape), "trainable": bool(parameter.requires_grad),
                     "sum": float(values.sum()), "abs": float(values.abs().sum()),
                     "head": [float(v) for v in values[:8]]})
    return rows


class _TrainStandIn(nn.Module):
    def __init__(self, weight, bias, dropout=False):
        super().__init__()
        self.flatten, self.linear, self.sigmoid = nn.Flatten(), nn.Linear(weight.shape[1], 1), nn.Sigmoid()
        self.dropout = nn.Dropout(0.5) if dropout else nn.Identity()
        with torch.no_grad():
            self.linear.weight.copy_(weight)
            self.linear.bias.copy_(bias)
        self.modes = []

    def forward(self, x):
        self.modes.append(bool(self.training))
        return self.sigmoid(self.linear(self.dropout(self.flatten(x))))


def _train_batch_probe(train_batch, load) -> dict:
    model = _TrainStandIn(load("train_weight"), load("train_bias"))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    losses, parameters = [], []
    initial = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).clone()
    for _step in range(2):
        model.eval()
        losses.append(float(train_batch(load("train_x"), load("train_y"), model, optimizer, nn.BCELoss())))
        parameters.append(torch.cat([p.detach().reshape(-1) for p in model.parameters()]).clone())
    return {"losses": losses, "parameters": parameters, "initial": initial}


def _accuracy_probe(accuracy, load) -> dict:
    model = _TrainStandIn(load("acc_weight"), load("acc_bias"), dropout=True)
    model.train()
    value = accuracy(load("acc_x"), load("acc_y"), model)
    # What a threshold other than 0.5 on the probability would give, for the failure message.
    with torch.no_grad():
        model.eval()
        probability = model(load("acc_x"))
    return {"value": float(value), "probabilities": probability.reshape(-1),
            "labels": load("acc_y").reshape(-1)}


def _conv_layer_probe(load, in_ch, out_ch, k) -> dict:
    layer = ref.ConvLayer(in_ch, out_ch, k)
    conv, norm = layer[0], layer[2]
    tag = f"conv_{in_ch}_{out_ch}_{k}"
    with torch.no_grad():
        conv.weight.copy_(load(f"{tag}_weight"))
        conv.bias.copy_(load(f"{tag}_bias"))
        norm.weight.copy_(load(f"{tag}_bn_weight"))
        norm.bias.copy_(load(f"{tag}_bn_bias"))
        norm.running_mean.copy_(load(f"{tag}_bn_mean"))
        norm.running_var.copy_(load(f"{tag}_bn_var"))
        layer.eval()
        evaluated = layer(load(f"{tag}_x"))
        layer.train()
        trained = layer(load(f"{tag}_x"))
    return {"eval": evaluated, "train": trained}


def _residual_probe(load, k) -> torch.Tensor:
    block = ref.ResidualBlock(RESIDUAL_CHANNELS, k)
    tag = f"res_{RESIDUAL_CHANNELS}_{k}"
    with torch.no_grad():
        for i, conv in enumerate((block.conv0, block.conv1)):
            conv.weight.copy_(load(f"{tag}_weight{i}"))
            conv.bias.copy_(load(f"{tag}_bias{i}"))
        return block.eval()(load(f"{tag}_x"))
