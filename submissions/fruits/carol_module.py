"""Fruits assignment, Carol C. -- written as a plain script."""
import os
import numpy as np
import torch
import matplotlib.pyplot as plt
from sklearn.metrics import accuracy_score
from sklearn.metrics.pairwise import cosine_similarity
from torchvision import datasets, models

weights = models.ResNet18_Weights.IMAGENET1K_V1
transform = weights.transforms()  # resize 256, centre crop 224, [0, 1], ImageNet normalisation

root = os.path.join("data", "fruits")
trainset = datasets.ImageFolder(root, transform=transform, is_valid_file=lambda f: f.endswith("gallery.jpg"))
testset = datasets.ImageFolder(root, transform=transform, is_valid_file=lambda f: f.endswith("probe.jpg"))

network = models.resnet18(weights=weights)
network.fc = torch.nn.Sequential()  # an empty Sequential passes the pooled feature through
network.eval()


def extract(dataset, network):
    network.eval()
    with torch.no_grad():
        images = torch.stack([dataset[i][0] for i in range(len(dataset))])
        labels = [dataset[i][1] for i in range(len(dataset))]
        feats = network(images)
    return dict(zip(labels, feats))


train_features = extract(trainset, network)
test_features = extract(testset, network)

order = range(len(trainset.classes))
similarities = cosine_similarity(np.stack([test_features[c].numpy() for c in order]),
                                 np.stack([train_features[c].numpy() for c in order]))



def show_matrix(matrix, names):
    fig, ax = plt.subplots(figsize=(6, 6))
    image = ax.matshow(matrix, cmap="coolwarm")
    ax.set_xticks(range(len(names)), names, rotation=90)
    ax.set_yticks(range(len(names)), names)
    fig.colorbar(image)
    plt.show()


show_matrix(similarities, trainset.classes)

y_pred = similarities.argmax(axis=1)
accuracy = accuracy_score(list(order), y_pred)
misclassified = [(trainset.classes[t], trainset.classes[p]) for t, p in zip(order, y_pred) if t != p]
r, c = np.argwhere(similarities == similarities.min())[0]
most_dissimilar = (trainset.classes[r], trainset.classes[c])
print(f"accuracy {accuracy:.0%}; misclassified {misclassified}; most dissimilar {most_dissimilar}")
