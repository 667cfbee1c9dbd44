"""fruits, written as a module: transforms v2, a sliced nn.Sequential, numpy results."""
# %%
import os
import numpy as np
import torch
import matplotlib.pyplot as plt
from torch import nn
from torchvision import datasets, models
from torchvision.transforms import v2

DATA = "data/fruits"

# %%
transform = v2.Compose([
    v2.Resize(256),
    v2.CenterCrop(224),
    v2.ToImage(),
    v2.ToDtype(torch.float32, scale=True),
    v2.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
])

# %%
trainset = datasets.ImageFolder(DATA, transform=transform, is_valid_file=lambda p: p.endswith("gallery.jpg"))
testset = datasets.ImageFolder(DATA, transform=transform, is_valid_file=lambda p: p.endswith("probe.jpg"))

# %%
resnet = models.resnet18(weights=models.ResNet18_Weights.DEFAULT)
network = nn.Sequential(*list(resnet.children())[:-1])
network.eval()

# %%
def extract(dataset, network):
    network.eval()
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, shuffle=False)
    features = {}
    with torch.no_grad():
        for images, labels in loader:
            out = network(images).flatten(1)
            for feature, label in zip(out, labels):
                features[int(label)] = feature
    return features

train_features = extract(trainset, network)
test_features = extract(testset, network)

# %%
n = len(trainset.classes)
A = np.stack([test_features[i].numpy() for i in range(n)])
B = np.stack([train_features[i].numpy() for i in range(n)])
A /= np.linalg.norm(A, axis=1, keepdims=True)
B /= np.linalg.norm(B, axis=1, keepdims=True)
similarities = A @ B.T

# %%
plt.imshow(similarities)
plt.colorbar()
plt.show()

# %%
predicted = similarities.argmax(axis=1)
accuracy = float(np.mean(predicted == np.arange(n)))
names = trainset.classes
misclassified = [(names[i], names[p]) for i, p in enumerate(predicted) if p != i]
i, j = np.unravel_index(np.argmin(similarities), similarities.shape)
most_dissimilar = (names[i], names[j])
print(accuracy, misclassified, most_dissimilar)
