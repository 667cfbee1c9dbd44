"""Reference solution of the `catsdogs` assignment (C1-C8): a frozen VGG16 with a small head trained
with BCE on Cats vs Dogs; a CNN from scratch; residual blocks; a VGG16 for 1-channel images.

Written like a good student answer, plus `solve(data_dir)`, which returns every graded global.
It runs only in the grader's process, never in a sandbox.
"""
from __future__ import annotations

from glob import glob
from pathlib import Path

import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import models, transforms

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
PER_CLASS = 500
HEAD_PARAMETERS = 65_793           # Linear(512, 128) + Linear(128, 1)
SCRATCH_PARAMETERS = 9_742_209     # make_scratch_model()

# C1: resize (no crop) to 224x224, scale to [0, 1], ImageNet normalisation.
preprocess = transforms.Compose([
    transforms.Resize((224, 224)),
    transforms.ToTensor(),
    transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
])


class CatsDogs(Dataset):
    """The first 500 cats and 500 dogs of `folder`/{cats,dogs}; label 1.0 for a dog, 0.0 for a cat."""

    def __init__(self, folder):
        cats = sorted(glob(str(Path(folder) / "cats" / "*.jpg")))[:PER_CLASS]
        dogs = sorted(glob(str(Path(folder) / "dogs" / "*.jpg")))[:PER_CLASS]
        self.files = cats + dogs
        self.targets = [Path(f).name.startswith("dog") for f in self.files]

    def __len__(self):
        return len(self.files)

    def __getitem__(self, index):
        image = Image.open(self.files[index]).convert("RGB")
        return preprocess(image), torch.tensor([float(self.targets[index])])


# C2: ImageNet VGG16, every pretrained parameter frozen, pooled to 1x1, a new trainable head.
def make_head() -> nn.Sequential:
    return nn.Sequential(nn.Flatten(), nn.Linear(512, 128), nn.ReLU(), nn.Dropout(0.2),
                         nn.Linear(128, 1), nn.Sigmoid())


def make_model() -> nn.Module:
    model = models.vgg16(weights=models.VGG16_Weights.IMAGENET1K_V1)
    for parameter in model.parameters():
        parameter.requires_grad = False
    model.avgpool = nn.AdaptiveAvgPool2d(output_size=(1, 1))
    model.classifier = make_head()
    return model


# C3
def make_loss_and_optimizer(model: nn.Module):
    return nn.BCELoss(), torch.optim.Adam(model.parameters(), lr=1e-3)


# C4: one step in train mode; accuracy in eval mode without gradients, threshold 0.5.
def train_batch(x, y, model, opt, loss_fn) -> float:
    model.train()
    prediction = model(x)
    batch_loss = loss_fn(prediction, y)
    batch_loss.backward()
    opt.step()
    opt.zero_grad()
    return batch_loss.item()


@torch.no_grad()
def accuracy(x, y, model) -> float:
    model.eval()
    prediction = model(x)
    return ((prediction > 0.5) == y.bool()).float().mean().item()


# C5: Conv2d (stride 1, no padding) - ReLU - BatchNorm2d - MaxPool2d(2).
def ConvLayer(in_ch: int, out_ch: int, kernel_size: int) -> nn.Sequential:  # noqa: N802 (contract name)
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, kernel_size), nn.ReLU(), nn.BatchNorm2d(out_ch),
                         nn.MaxPool2d(2))


def make_scratch_model() -> nn.Sequential:
    """The handout's CNN from scratch: 224 -> 111 -> 54 -> 26 -> 12 -> 5 -> 1; 9,742,209 parameters."""
    return nn.Sequential(
        ConvLayer(3, 64, 3), ConvLayer(64, 512, 3), ConvLayer(512, 512, 3), ConvLayer(512, 512, 3),
        ConvLayer(512, 512, 3), ConvLayer(512, 512, 3), nn.Flatten(), nn.Linear(512, 1), nn.Sigmoid())


# C6: two same-size convolutions around a ReLU, plus the input.
class ResidualBlock(nn.Module):
    def __init__(self, in_ch: int, kernel_size: int):
        super().__init__()
        self.conv0 = nn.Conv2d(in_ch, in_ch, kernel_size, padding=kernel_size // 2)
        self.conv1 = nn.Conv2d(in_ch, in_ch, kernel_size, padding=kernel_size // 2)

    def forward(self, x):
        return self.conv1(torch.relu(self.conv0(x))) + x


# C7
def make_resnet9() -> nn.Sequential:
    return nn.Sequential(ConvLayer(3, 64, 3), ResidualBlock(64, 3), ResidualBlock(64, 3), ResidualBlock(64, 3),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 1), nn.Sigmoid())


# C8: a learnable 1 -> 3 convolution in front of the frozen ImageNet VGG16 features, a new head.
def make_gray_model() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 3, kernel_size=3, padding=1), make_model())


def trainable_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def solve(data_dir: str | Path, max_batches: int | None = None) -> dict:
    """Every graded global of the assignment, computed on `data_dir` (one training epoch, or its first
    `max_batches` batches: the graders need none of the trained values, and a full epoch of the real
    data set takes minutes on a CPU)."""
    torch.manual_seed(0)
    data_dir = Path(data_dir)
    train_ds = CatsDogs(data_dir / "training_set")
    test_ds = CatsDogs(data_dir / "test_set")
    model = make_model()
    loss_fn, optimizer = make_loss_and_optimizer(model)
    losses = []
    for x, y in DataLoader(train_ds, batch_size=32, shuffle=True):
        if max_batches is not None and len(losses) >= max_batches:
            break
        losses.append(train_batch(x, y, model, optimizer, loss_fn))
    x, y = next(iter(DataLoader(test_ds, batch_size=32)))
    return {
        "CatsDogs": CatsDogs, "train_ds": train_ds, "test_ds": test_ds,
        "model": model, "loss_fn": loss_fn, "optimizer": optimizer,
        "train_batch": train_batch, "accuracy": accuracy, "losses": losses,
        "test_accuracy": accuracy(x, y, model),
        "ConvLayer": ConvLayer, "scratch_model": make_scratch_model(),
        "ResidualBlock": ResidualBlock, "resnet9": make_resnet9(),
        "gray_model": make_gray_model(),
    }
