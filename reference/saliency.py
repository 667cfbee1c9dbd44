"""Reference solution of the `saliency` assignment (M1-M2): image-class saliency maps with VGG16.

Simonyan, Vedaldi and Zisserman (2014), section 3.1: the saliency of pixel (i, j) for class c is
max over colour channels of |d S_c / d I| at that pixel, where S_c is the unnormalised class score
(the logit, before softmax). Written like a good student answer, plus `solve(data_dir)`, which
returns every graded global. It runs only in the grader's process, never in a sandbox.
"""
from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from torch import nn
from torchvision import models, transforms

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]

# Given in the template: the PIL image resized (squashed) to 224 x 224, [0, 1], ImageNet normalisation.
preprocess = transforms.Compose([
    transforms.Resize((224, 224)),
    transforms.ToTensor(),
    transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
])


def load_image(path: str | Path) -> torch.Tensor:
    """The image file as a 1 x 3 x 224 x 224 network input (given in the template)."""
    return preprocess(Image.open(path).convert("RGB")).unsqueeze(0)


def make_model() -> nn.Module:
    """VGG16 with its ImageNet weights, in eval mode (dropout off)."""
    return models.vgg16(weights=models.VGG16_Weights.IMAGENET1K_V1).eval()


# M1: max over channels of |d score_target / d image|; the model and the image are left as they were.
def compute_saliency(model: nn.Module, image: torch.Tensor, target: int | None = None) -> torch.Tensor:
    image = image.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        scores = model(image)                      # (1, classes) unnormalised scores
        if target is None:
            target = int(scores[0].argmax())
        (gradient,) = torch.autograd.grad(scores[0, target], image)
    return gradient.abs().amax(dim=1)[0]           # H x W


def image_files(data_dir: str | Path) -> list[Path]:
    return sorted((Path(data_dir) / "My-Images").glob("*.jpg"))


def solve(data_dir: str | Path) -> dict:
    """Every graded global of the assignment, computed on `data_dir` (data/saliency)."""
    model = make_model()
    saliency_maps = {path.name: compute_saliency(model, load_image(path)) for path in image_files(data_dir)}
    return {"model": model, "saliency_maps": saliency_maps}
