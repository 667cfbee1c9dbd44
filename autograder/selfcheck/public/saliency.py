"""saliency: the handout's public checks (map shapes, signs, an untouched model) on the notebook's values.

Executed in the student's kernel in the namespace of kernel_side.py, whose helpers (check, fail,
need, tensor, number, fraction, module, describe, as_array, image_files) it uses.
"""
import os

import torch
from torch import nn


def _small_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, 5)).eval()


@check("M1", "compute_saliency(model, 1x3xHxW image[, target]) is an H x W map >= 0")
def _maps(ns, ctx):
    compute = need(ns, "compute_saliency")
    image = torch.randn(1, 3, 20, 24, generator=torch.Generator().manual_seed(0))
    for target in (None, 2):
        what = f"compute_saliency(model, image of 1x3x20x24{'' if target is None else ', target=2'})"
        values = as_array(compute(_small_net(), image.clone(), target) if target is not None
                          else compute(_small_net(), image.clone()), what)
        if values.shape != (20, 24):
            fail(f"{what} has shape {values.shape}; expected (20, 24): the maximum over channels, batch removed")
        if values.min() < 0:
            fail(f"{what} has negative values: take the absolute value of the gradient")


@check("M1", "compute_saliency leaves the model's weights and requires_grad unchanged")
def _model_untouched(ns, ctx):
    model = _small_net()
    before = {n: (p.detach().clone(), p.requires_grad) for n, p in model.named_parameters()}
    need(ns, "compute_saliency")(model, torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(1)))
    for name, parameter in model.named_parameters():
        value, flag = before[name]
        if not torch.equal(value, parameter.detach()) or flag != parameter.requires_grad:
            fail(f"compute_saliency changed the model's parameter {name} (its values or requires_grad)")


@check("M2", "saliency_maps has a 2-D non-negative map for every image in My-Images")
def _all_images(ns, ctx):
    files = image_files(os.path.join(ctx["data_dir"], "My-Images"))
    maps = need(ns, "saliency_maps")
    if not isinstance(maps, dict) or sorted(maps) != files:
        fail(f"`saliency_maps` keys should be the file names {files}, got {describe(maps) if not isinstance(maps, dict) else sorted(maps)}")
    for file, value in maps.items():
        values = as_array(value, f"`saliency_maps['{file}']`")
        if values.ndim != 2 or values.min() < 0:
            fail(f"`saliency_maps['{file}']` should be a 2-D non-negative map, got {describe(value)}")


@check("M3", "the answers are in a `## Answer M3` markdown cell")
def _answers(ns, ctx):
    if "M3" not in ctx["answers"]:
        fail("no markdown cell starts with `## Answer M3`: a TA marks the discussion from that cell")
