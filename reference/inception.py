"""Reference solution of the `inception` assignment (I1-I6): fine-tuning vs feature extraction.

Inception v3 on a Places subset, after the PyTorch "finetuning torchvision models" tutorial.
Written like a good student answer, plus `solve(data_dir)`, which returns every graded global.
It runs only in the grader's process, never in a sandbox.
"""
from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn
from torchvision import datasets, models, transforms

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
INPUT_SIZE = 299
AUX_WEIGHT = 0.4


# I1: freeze every parameter when feature extracting; leave the model alone otherwise.
def set_parameter_requires_grad(model: nn.Module, feature_extracting: bool) -> None:
    if feature_extracting:
        for param in model.parameters():
            param.requires_grad = False


# I2: ImageNet Inception v3 with both classifiers replaced by fresh layers for `num_classes`.
def initialize_model(num_classes: int, feature_extract: bool, use_pretrained: bool = True):
    weights = models.Inception_V3_Weights.IMAGENET1K_V1 if use_pretrained else None
    model = models.inception_v3(weights=weights, aux_logits=True)
    set_parameter_requires_grad(model, feature_extract)
    model.AuxLogits.fc = nn.Linear(model.AuxLogits.fc.in_features, num_classes)   # 768 -> n
    model.fc = nn.Linear(model.fc.in_features, num_classes)                       # 2048 -> n
    return model, INPUT_SIZE


# I3: without augmentation both splits are resized and centre-cropped; with it, 'train' is random.
def _evaluation(input_size: int = INPUT_SIZE):
    return transforms.Compose([
        transforms.Resize(input_size),
        transforms.CenterCrop(input_size),
        transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


data_transforms = {"train": _evaluation(), "val": _evaluation()}
augment_transforms = {
    "train": transforms.Compose([
        transforms.RandomResizedCrop(INPUT_SIZE),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ]),
    "val": _evaluation(),
}


# I4: the tutorial's loop: train then validate every epoch, keep the best validation weights.
def train_model(model, dataloaders, criterion, optimizer, num_epochs=25, is_inception=False):
    val_acc_history = []
    best_model_wts = copy.deepcopy(model.state_dict())
    best_acc = 0.0
    for _epoch in range(num_epochs):
        for phase in ("train", "val"):
            model.train() if phase == "train" else model.eval()
            running_corrects = 0
            for inputs, labels in dataloaders[phase]:
                optimizer.zero_grad()
                with torch.set_grad_enabled(phase == "train"):
                    if is_inception and phase == "train":
                        outputs, aux_outputs = model(inputs)
                        loss = criterion(outputs, labels) + AUX_WEIGHT * criterion(aux_outputs, labels)
                    else:
                        outputs = model(inputs)
                        loss = criterion(outputs, labels)
                    preds = outputs.argmax(dim=1)
                    if phase == "train":
                        loss.backward()
                        optimizer.step()
                running_corrects += int((preds == labels).sum())
            epoch_acc = running_corrects / len(dataloaders[phase].dataset)
            if phase == "val":
                val_acc_history.append(epoch_acc)
                if epoch_acc > best_acc:
                    best_acc = epoch_acc
                    best_model_wts = copy.deepcopy(model.state_dict())
    model.load_state_dict(best_model_wts)
    return model, val_acc_history


# I5: rows = true class, columns = predicted class.
@torch.no_grad()
def confusion_matrix(model, loader, num_classes: int) -> torch.Tensor:
    model.eval()
    matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    for inputs, labels in loader:
        preds = model(inputs).argmax(dim=1)
        for true, pred in zip(labels.view(-1).tolist(), preds.view(-1).tolist()):
            matrix[true, pred] += 1
    return matrix


# I6: the whole model (class and weights), so that load_model needs nothing but the path.
def save_model(model: nn.Module, path) -> None:
    torch.save(model, path)


def load_model(path) -> nn.Module:
    return torch.load(path, weights_only=False)


def make_datasets(data_dir: str | Path, transforms_by_split: dict) -> dict:
    return {split: datasets.ImageFolder(str(Path(data_dir) / split), transform=transforms_by_split[split])
            for split in ("train", "val")}


def solve(data_dir: str | Path) -> dict:
    """Every graded global of the assignment (the transforms), and the data they apply to."""
    image_datasets = make_datasets(data_dir, data_transforms)
    return {
        "data_transforms": data_transforms,
        "augment_transforms": augment_transforms,
        "image_datasets": image_datasets,
        "class_names": image_datasets["train"].classes,
    }
