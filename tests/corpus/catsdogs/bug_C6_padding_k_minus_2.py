"""catsdogs module with one bug (C6): padding = kernel_size - 2, right for k = 3 only (resnet9 uses k = 3 and still runs)."""

# %%
import os
from glob import glob

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import models, transforms
from PIL import Image

_ = torch.manual_seed(0)

# %%
# Download cell: it does nothing when data/catsdogs already exists.
DATA_DIR = os.path.join("data", "catsdogs")
if os.path.isdir(DATA_DIR):
    print(f"Data found in {DATA_DIR}")
else:
    import shutil, subprocess, zipfile
    os.makedirs("data", exist_ok=True)
    subprocess.run(["kaggle", "datasets", "download", "-d", "tongpython/cat-and-dog", "-p", "data"], check=True)
    with zipfile.ZipFile(os.path.join("data", "cat-and-dog.zip")) as archive:
        archive.extractall(os.path.join("data", "cat-and-dog"))
    for split in ("training_set", "test_set"):  # the archive holds training_set/training_set/cats/...
        shutil.move(os.path.join("data", "cat-and-dog", split, split), os.path.join(DATA_DIR, split))
    print(f"Data downloaded to {DATA_DIR}")

# %%
class CatsDogs(Dataset):
    def __init__(self, folder):
        cats = sorted(glob(folder + "/cats/*.jpg"))[:500]
        dogs = sorted(glob(folder + "/dogs/*.jpg"))[:500]
        self.fpaths = cats + dogs
        self.targets = [os.path.basename(f).startswith("dog") for f in self.fpaths]
        self.transform = transforms.Compose([
            transforms.Resize((224, 224)),
            transforms.ToTensor(),
            transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
        ])

    def __len__(self):
        return len(self.fpaths)

    def __getitem__(self, ix):
        image = Image.open(self.fpaths[ix]).convert("RGB")
        return self.transform(image), torch.tensor([self.targets[ix]]).float()

# %%
train_ds = CatsDogs(os.path.join(DATA_DIR, "training_set"))
test_ds = CatsDogs(os.path.join(DATA_DIR, "test_set"))
print(len(train_ds), "training images,", len(test_ds), "test images")

# %%
model = models.vgg16(weights=models.VGG16_Weights.IMAGENET1K_V1)
for param in model.parameters():
    param.requires_grad = False
model.avgpool = nn.AdaptiveAvgPool2d(output_size=(1, 1))
model.classifier = nn.Sequential(
    nn.Flatten(),
    nn.Linear(512, 128),
    nn.ReLU(),
    nn.Dropout(0.2),
    nn.Linear(128, 1),
    nn.Sigmoid(),
)

# %%
if model is not None:
    print(sum(p.numel() for p in model.parameters() if p.requires_grad), "trainable parameters (expected 65,793)")

# %%
loss_fn = nn.BCELoss()
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

# %%
def train_batch(x, y, model, opt, loss_fn):
    model.train()
    prediction = model(x)
    batch_loss = loss_fn(prediction, y)
    batch_loss.backward()
    opt.step()
    opt.zero_grad()
    return batch_loss.item()


@torch.no_grad()
def accuracy(x, y, model):
    model.eval()
    prediction = model(x)
    is_correct = (prediction > 0.5) == y
    return is_correct.float().mean().item()

# %%
EPOCHS = 1
if len(train_ds) == 0 or model is None:
    print("Nothing to train yet: write CatsDogs (C1) and model (C2) first.")
else:
    train_dl = DataLoader(train_ds, batch_size=32, shuffle=True)
    test_dl = DataLoader(test_ds, batch_size=32, shuffle=False)
    for epoch in range(EPOCHS):
        losses = [train_batch(x, y, model, optimizer, loss_fn) for x, y in train_dl]
        accuracies = [float(accuracy(x, y, model)) for x, y in test_dl]
        print(f"epoch {epoch + 1}: training loss {np.mean(losses):.4f}, test accuracy {np.mean(accuracies):.3f}")

# %%
def ConvLayer(in_ch, out_ch, kernel_size):
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel_size),
        nn.ReLU(),
        nn.BatchNorm2d(out_ch),
        nn.MaxPool2d(2),
    )

# %%
scratch_model = nn.Sequential(
    ConvLayer(3, 64, 3),
    ConvLayer(64, 512, 3),
    ConvLayer(512, 512, 3),
    ConvLayer(512, 512, 3),
    ConvLayer(512, 512, 3),
    ConvLayer(512, 512, 3),
    nn.Flatten(),
    nn.Linear(512, 1),
    nn.Sigmoid(),
)
print(sum(p.numel() for p in scratch_model.parameters()), "parameters (expected 9,742,209)")

# %%
class ResidualBlock(nn.Module):
    def __init__(self, in_ch, kernel_size):
        super().__init__()
        self.conv0 = nn.Conv2d(in_ch, in_ch, kernel_size, padding=kernel_size - 2)
        self.conv1 = nn.Conv2d(in_ch, in_ch, kernel_size, padding=kernel_size - 2)

    def forward(self, x):
        return self.conv1(torch.relu(self.conv0(x))) + x

# %%
resnet9 = nn.Sequential(
    ConvLayer(3, 64, 3),
    ResidualBlock(64, 3),
    ResidualBlock(64, 3),
    ResidualBlock(64, 3),
    nn.AdaptiveAvgPool2d(1),
    nn.Flatten(),
    nn.Linear(64, 1),
    nn.Sigmoid(),
)

# %%
if resnet9 is not None:
    print(resnet9(torch.zeros(1, 3, 224, 224)).shape)

# %%
vgg = models.vgg16(weights=models.VGG16_Weights.IMAGENET1K_V1)
for param in vgg.parameters():
    param.requires_grad = False
vgg.avgpool = nn.AdaptiveAvgPool2d(output_size=(1, 1))
vgg.classifier = nn.Sequential(
    nn.Flatten(),
    nn.Linear(512, 128),
    nn.ReLU(),
    nn.Dropout(0.2),
    nn.Linear(128, 1),
    nn.Sigmoid(),
)
gray_model = nn.Sequential(nn.Conv2d(1, 3, kernel_size=3, padding=1), vgg)

# %%
if gray_model is not None:
    print(gray_model(torch.zeros(1, 1, 224, 224)).shape)
