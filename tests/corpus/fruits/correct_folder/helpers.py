"""Helpers for the fruits notebook."""
import torch
from torchvision import datasets, transforms

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def make_transform():
    return transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
                               transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def split_dataset(root, file_name, transform):
    return datasets.ImageFolder(root, transform=transform, is_valid_file=lambda p: p.endswith(file_name))


@torch.no_grad()
def extract(dataset, network):
    network.eval()
    loader = torch.utils.data.DataLoader(dataset, batch_size=len(dataset), shuffle=False)
    images, labels = next(iter(loader))
    features = network(images)
    return {int(label): feature for label, feature in zip(labels, features)}


def cosine_matrix(test_features, train_features):
    keys = sorted(train_features)
    a = torch.nn.functional.normalize(torch.stack([test_features[k] for k in keys]), dim=1)
    b = torch.nn.functional.normalize(torch.stack([train_features[k] for k in keys]), dim=1)
    return a @ b.T
