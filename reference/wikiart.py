"""Reference solution of the `wikiart` assignment (W1-W4): fine-tuning AlexNet, TensorBoard summaries.

Written like a good student answer, plus `solve(data_dir)`, which builds the data loaders, fine-tunes
both AlexNet variants for one epoch and returns what the notebook ends with. It runs only in the
grader's process, never in a sandbox. W5 (three free-text answers) is marked by a person.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.tensorboard import SummaryWriter
from torchvision import datasets, models, transforms

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
LR = 0.001

# Given code of the template (not graded): AlexNet's preprocessing, random crops and flips to train.
data_transforms = {
    "train": transforms.Compose([
        transforms.RandomResizedCrop(224),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ]),
    "val": transforms.Compose([
        transforms.Resize(256),
        transforms.CenterCrop(224),
        transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ]),
}


def make_loaders(data_dir: str | Path, batch_size: int = 4) -> dict[str, DataLoader]:
    image_datasets = {split: datasets.ImageFolder(os.path.join(data_dir, split), data_transforms[split])
                      for split in ("train", "val")}
    return {split: DataLoader(image_datasets[split], batch_size=batch_size, shuffle=(split == "train"))
            for split in ("train", "val")}


# W1: AlexNet with ImageNet weights; "last": a new fc8; "last_two": fc7 and fc8 replaced by one new layer.
def build_alexnet(num_classes: int, variant: str = "last") -> nn.Module:
    model = models.alexnet(weights=models.AlexNet_Weights.IMAGENET1K_V1)
    if variant == "last":
        model.classifier[6] = nn.Linear(4096, num_classes)
    elif variant == "last_two":
        # keep Dropout, fc6 and its ReLU; drop Dropout, fc7, ReLU, fc8; add the new layer
        model.classifier = nn.Sequential(*list(model.classifier.children())[:3], nn.Linear(4096, num_classes))
    else:
        raise ValueError(f"unknown variant {variant!r}: use 'last' or 'last_two'")
    return model


# W2: cross-entropy on the raw scores; SGD over the trainable parameters.
criterion = nn.CrossEntropyLoss()


def make_optimizer(model: nn.Module, lr: float) -> torch.optim.Optimizer:
    return torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr, momentum=0.9)


# W3: fraction of correctly classified items, eval mode, no gradients.
@torch.no_grad()
def evaluate(model: nn.Module, loader) -> float:
    model.eval()
    correct = total = 0
    for inputs, labels in loader:
        predicted = model(inputs).argmax(dim=1)
        correct += int((predicted == labels).sum())
        total += len(labels)
    return correct / total


# W4: one value per epoch of the training loss, training accuracy and validation accuracy.
def train(model: nn.Module, loaders: dict, epochs: int, log_dir: str) -> nn.Module:
    optimizer = make_optimizer(model, LR)
    writer = SummaryWriter(log_dir)
    for epoch in range(epochs):
        model.train()
        loss_sum, correct, seen = 0.0, 0, 0
        for inputs, labels in loaders["train"]:
            optimizer.zero_grad()
            outputs = model(inputs)
            loss = criterion(outputs, labels)
            loss.backward()
            optimizer.step()
            loss_sum += loss.item() * len(labels)
            correct += int((outputs.argmax(dim=1) == labels).sum())
            seen += len(labels)
        val_accuracy = evaluate(model, loaders["val"])
        writer.add_scalar("Loss/train", loss_sum / seen, epoch)
        writer.add_scalar("Accuracy/train", correct / seen, epoch)
        writer.add_scalar("Accuracy/val", val_accuracy, epoch)
    writer.close()
    return model


def solve(data_dir: str | Path, epochs: int = 1, log_root: str | None = None) -> dict:
    """What the notebook ends with: loaders, both fine-tuned variants and their validation accuracy."""
    torch.manual_seed(0)
    loaders = make_loaders(data_dir)
    classes = loaders["train"].dataset.classes
    log_root = log_root or tempfile.mkdtemp(prefix="wikiart-runs-")
    solved = {"loaders": loaders, "classes": classes, "log_root": log_root}
    for variant in ("last", "last_two"):
        model = build_alexnet(len(classes), variant)
        train(model, loaders, epochs, os.path.join(log_root, variant))
        solved[f"model_{variant}"] = model
        solved[f"val_accuracy_{variant}"] = evaluate(model, loaders["val"])
    return solved
