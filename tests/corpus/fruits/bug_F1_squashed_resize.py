"""fruits as a module, with one bug: the image is squashed to 224x224 (no resize 256 + centre crop)."""
import os

import numpy as np
import torch
import matplotlib.pyplot as plt
from torch import nn
from torchvision import datasets, models, transforms

DATA_DIR = "data/fruits"

transform = transforms.Compose([
    transforms.Resize((224, 224)),
    transforms.ToTensor(),
    transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
])

trainset = datasets.ImageFolder(DATA_DIR, transform=transform, is_valid_file=lambda p: "gallery" in os.path.basename(p))
testset = datasets.ImageFolder(DATA_DIR, transform=transform, is_valid_file=lambda p: "probe" in os.path.basename(p))

network = models.resnet18(weights=models.ResNet18_Weights.IMAGENET1K_V1)
network.fc = nn.Identity()
network.eval()


def extract(dataset, network):
    network.eval()
    with torch.no_grad():
        return {label: network(image.unsqueeze(0))[0] for image, label in dataset}


train_features = extract(trainset, network)
test_features = extract(testset, network)

test = np.stack([test_features[i].numpy() for i in range(len(testset.classes))])
train = np.stack([train_features[i].numpy() for i in range(len(trainset.classes))])
similarities = (test / np.linalg.norm(test, axis=1, keepdims=True)) @ (train / np.linalg.norm(train, axis=1, keepdims=True)).T

plt.imshow(similarities)
plt.show()

predicted = similarities.argmax(axis=1)
accuracy = float((predicted == np.arange(len(predicted))).mean())
misclassified = [(trainset.classes[t], trainset.classes[p]) for t, p in enumerate(predicted) if t != p]
most_dissimilar = tuple(trainset.classes[i] for i in np.unravel_index(similarities.argmin(), similarities.shape))
