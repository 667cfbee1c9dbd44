"""Reference solution of the `scene15` assignment (S1-S7): VGG16 relu7 features + a linear SVM.

Written like a good student answer, plus `solve(data_dir)`, which returns every graded global.
It runs only in the grader's process, never in a sandbox.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sklearn.svm import LinearSVC
from torch import nn
from torchvision import datasets, models, transforms

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
CATEGORIES = models.VGG16_Weights.IMAGENET1K_V1.meta["categories"]  # offline
C_VALUES = [0.01, 0.1, 1.0, 10.0, 100.0]

# The handout's preprocessing: resize to 224 x 224 (bilinear), [0, 1], ImageNet normalisation.
preprocess = transforms.Compose([
    transforms.Resize((224, 224), interpolation=transforms.InterpolationMode.BILINEAR),
    transforms.ToTensor(),
    transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
])


def to_input(image: Image.Image) -> torch.Tensor:
    """A PIL image (RGB or grayscale) -> 3x224x224 tensor; grayscale becomes three equal channels."""
    return preprocess(image.convert("RGB"))


def load_vgg16() -> nn.Module:
    return models.vgg16(weights=models.VGG16_Weights.IMAGENET1K_V1)


# S1
@torch.no_grad()
def predict_imagenet(image: Image.Image, model: nn.Module) -> tuple[int, str]:
    model.eval()
    scores = model(to_input(image).unsqueeze(0))
    index = int(scores.argmax(dim=1)[0])
    return index, CATEGORIES[index]


# S2
def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def output_size(model: nn.Module) -> int:
    model.eval()
    return int(model(torch.zeros(1, 3, 224, 224)).shape[1])


# S3: the 4096-d activation after the second fully connected layer's ReLU (relu7).
class VGG16relu7(nn.Module):
    def __init__(self, vgg16: nn.Module):
        super().__init__()
        self.features = vgg16.features
        self.avgpool = vgg16.avgpool
        self.fc = nn.Sequential(*list(vgg16.classifier.children())[:5])  # fc6 relu6 drop6 fc7 relu7

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.fc(torch.flatten(x, 1))


# S4: one row per item, dataset order, rows L2-normalised.
@torch.no_grad()
def extract_features(dataset, model: nn.Module) -> np.ndarray:
    model.eval()
    rows = []
    for i in range(len(dataset)):
        image, _label = dataset[i]
        rows.append(model(to_input(image).unsqueeze(0))[0])
    features = torch.stack(rows)
    features = features / features.norm(dim=1, keepdim=True)
    return features.numpy().astype(np.float32)


def load_image(path: str) -> Image.Image:
    """The image as stored (grayscale stays mode "L"), fully read so no file stays open."""
    with open(path, "rb") as handle:
        image = Image.open(handle)
        image.load()
    return image


def image_folder(folder: str | Path) -> datasets.ImageFolder:
    """Items (PIL image as stored, class index)."""
    return datasets.ImageFolder(str(folder), loader=load_image)


# S6, S7
def fit_svm(X: np.ndarray, y: np.ndarray, C: float = 1.0) -> LinearSVC:
    return LinearSVC(C=C, random_state=0).fit(X, y)


def solve(data_dir: str | Path) -> dict:
    """Every graded global of the assignment, computed on `data_dir`."""
    data_dir = Path(data_dir)
    vgg16 = load_vgg16()
    trainset, testset = image_folder(data_dir / "train"), image_folder(data_dir / "test")
    relu7 = VGG16relu7(vgg16).eval()
    X_train, X_test = extract_features(trainset, relu7), extract_features(testset, relu7)
    y_train, y_test = np.array(trainset.targets), np.array(testset.targets)
    svm = fit_svm(X_train, y_train, 1.0)
    C_scores = {C: float(fit_svm(X_train, y_train, C).score(X_test, y_test)) for C in C_VALUES}
    return {
        "vgg16": vgg16,
        "relu7": relu7,
        "classes": list(trainset.classes),
        "vgg16_param_count": parameter_count(vgg16),
        "vgg16_output_size": output_size(vgg16),
        "X_train": X_train,
        "X_test": X_test,
        "y_train": y_train,
        "y_test": y_test,
        "svm": svm,
        "svm_score": float(svm.score(X_test, y_test)),
        "C_scores": C_scores,
        "best_C": max(C_scores, key=C_scores.get),
    }
