"""Reference solution of the `fruits` assignment (F1-F8): ResNet-18 deep features, cosine similarity.

Written like a good student answer, plus `solve(data_dir)`, which returns every graded global.
It runs only in the grader's process, never in a sandbox.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchvision import datasets, models, transforms

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]

# F1: shorter side to 256, centre crop 224, [0, 1], ImageNet normalisation.
transform = transforms.Compose([
    transforms.Resize(256),
    transforms.CenterCrop(224),
    transforms.ToTensor(),
    transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
])


# F2: one ImageFolder per split, told apart by file name.
def make_datasets(data_dir: str | Path) -> tuple[datasets.ImageFolder, datasets.ImageFolder]:
    def only(file_name: str):
        return lambda path: Path(path).name == file_name

    trainset = datasets.ImageFolder(str(data_dir), transform=transform, is_valid_file=only("gallery.jpg"))
    testset = datasets.ImageFolder(str(data_dir), transform=transform, is_valid_file=only("probe.jpg"))
    return trainset, testset


# F3: ImageNet ResNet-18 whose forward gives the 512-d pooled feature.
def make_network() -> nn.Module:
    network = models.resnet18(weights=models.ResNet18_Weights.IMAGENET1K_V1)
    network.fc = nn.Identity()
    return network.eval()


# F4: class index -> (512,) float32 feature, eval mode, no grad.
@torch.no_grad()
def extract(dataset, network: nn.Module) -> dict[int, torch.Tensor]:
    network.eval()
    features = {}
    for image, label in dataset:
        features[int(label)] = network(image.unsqueeze(0)).reshape(-1).float()
    return features


# F5: rows = test (true) class, columns = train (predicted) class.
def cosine_similarities(test_features: dict, train_features: dict) -> torch.Tensor:
    classes = sorted(train_features)
    test = torch.stack([test_features[c] for c in classes])
    train = torch.stack([train_features[c] for c in classes])
    test = test / test.norm(dim=1, keepdim=True)
    train = train / train.norm(dim=1, keepdim=True)
    return test @ train.T


# F7
def accuracy_of(similarities: torch.Tensor) -> float:
    predicted = similarities.argmax(dim=1)
    return (predicted == torch.arange(len(similarities))).float().mean().item()


# F8
def misclassified_pairs(similarities: torch.Tensor, classes: list[str]) -> list[tuple[str, str]]:
    predicted = similarities.argmax(dim=1).tolist()
    return [(classes[true], classes[pred]) for true, pred in enumerate(predicted) if true != pred]


def most_dissimilar_pair(similarities: torch.Tensor, classes: list[str]) -> tuple[str, str]:
    row, column = divmod(int(similarities.argmin()), similarities.shape[1])
    return classes[row], classes[column]


def solve(data_dir: str | Path) -> dict:
    """Every graded global of the assignment, computed on `data_dir`."""
    trainset, testset = make_datasets(data_dir)
    network = make_network()
    train_features = extract(trainset, network)
    test_features = extract(testset, network)
    similarities = cosine_similarities(test_features, train_features)
    return {
        "transform": transform,
        "trainset": trainset,
        "testset": testset,
        "network": network,
        "train_features": train_features,
        "test_features": test_features,
        "similarities": similarities,
        "accuracy": accuracy_of(similarities),
        "misclassified": misclassified_pairs(similarities, trainset.classes),
        "most_dissimilar": most_dissimilar_pair(similarities, trainset.classes),
    }
