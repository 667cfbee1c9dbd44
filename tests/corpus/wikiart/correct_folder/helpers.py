"""Helpers of my wikiart notebook: the model, the loss, the optimizer, evaluation and training."""
import torch
from torch import nn
from torch.utils.tensorboard import SummaryWriter
from torchvision import models

LR = 0.002
criterion = nn.CrossEntropyLoss()


def build_alexnet(num_classes, variant="last"):
    model = models.alexnet(weights=models.AlexNet_Weights.IMAGENET1K_V1)
    layers = list(model.classifier)
    if variant == "last":
        layers[-1] = nn.Linear(4096, num_classes)
    else:
        layers = layers[:3] + [nn.Linear(4096, num_classes)]
    model.classifier = nn.Sequential(*layers)
    return model


def make_optimizer(model, lr):
    return torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr)


def evaluate(model, loader):
    model.eval()
    right = 0
    with torch.no_grad():
        for x, y in loader:
            right += int(torch.eq(model(x).max(1).indices, y).sum())
    return right / len(loader.dataset)


def train(model, loaders, epochs, log_dir):
    optimizer = make_optimizer(model, LR)
    with SummaryWriter(log_dir) as writer:
        for epoch in range(epochs):
            model.train()
            losses, right = [], 0
            for x, y in loaders["train"]:
                out = model(x)
                loss = criterion(out, y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                losses.append(loss.item() * len(y))
                right += int(torch.eq(out.max(1).indices, y).sum())
            n = len(loaders["train"].dataset)
            writer.add_scalar("loss/train", sum(losses) / n, epoch + 1)
            writer.add_scalar("acc/train", right / n, epoch + 1)
            writer.add_scalar("acc/validation", evaluate(model, loaders["val"]), epoch + 1)
    return model
