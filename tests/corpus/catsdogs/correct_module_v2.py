"""catsdogs as a module: torchvision.io + transforms v2, nn.Sequential of VGG16's parts, ConvLayer a class, padding='same', gray_model sharing model."""

# %%
import glob
import os

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import models
from torchvision.io import ImageReadMode, decode_image
from torchvision.transforms import v2

DATA = "data/catsdogs"
torch.manual_seed(0)

# %%
class CatsDogs(Dataset):
    preprocess = v2.Compose([
        v2.Resize((224, 224), antialias=True),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
    ])

    def __init__(self, folder):
        files = sorted(glob.glob(os.path.join(folder, "*", "*.jpg")))
        cats = [f for f in files if not os.path.basename(f).startswith("dog")][:500]
        dogs = [f for f in files if os.path.basename(f).startswith("dog")][:500]
        self.items = [(f, 0.0) for f in cats] + [(f, 1.0) for f in dogs]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        path, label = self.items[i]
        image = decode_image(path, mode=ImageReadMode.RGB)
        return self.preprocess(image), torch.tensor([label])

# %%
train_ds = CatsDogs(f"{DATA}/training_set")
test_ds = CatsDogs(f"{DATA}/test_set")

# %%
vgg16 = models.vgg16(weights=models.VGG16_Weights.DEFAULT)
for p in vgg16.features.parameters():
    p.requires_grad = False
head = nn.Sequential(nn.Flatten(), nn.Linear(512, 128), nn.ReLU(), nn.Dropout(0.2), nn.Linear(128, 1), nn.Sigmoid())
model = nn.Sequential(vgg16.features, nn.AdaptiveAvgPool2d((1, 1)), head)
del vgg16

# %%
loss_fn = nn.BCELoss(reduction="mean")
optimizer = torch.optim.Adam(filter(lambda p: p.requires_grad, model.parameters()), lr=1e-3)

# %%
def train_batch(x, y, model, opt, loss_fn):
    model.train()
    opt.zero_grad()
    loss = loss_fn(model(x), y)
    loss.backward()
    opt.step()
    return loss


def accuracy(x, y, model):
    model.eval()
    with torch.no_grad():
        return ((model(x) > 0.5).float() == y).float().mean()

# %%
for x, y in DataLoader(train_ds, batch_size=16, shuffle=True):
    print("loss", float(train_batch(x, y, model, optimizer, loss_fn)))
for x, y in DataLoader(test_ds, batch_size=16):
    print("accuracy", float(accuracy(x, y, model)))

# %%
class ConvLayer(nn.Sequential):
    def __init__(self, in_ch, out_ch, kernel_size):
        super().__init__(nn.Conv2d(in_ch, out_ch, kernel_size), nn.ReLU(), nn.BatchNorm2d(out_ch), nn.MaxPool2d(2))


scratch_model = nn.Sequential(
    ConvLayer(3, 64, 3), ConvLayer(64, 512, 3),
    *[ConvLayer(512, 512, 3) for _ in range(4)],
    nn.Flatten(), nn.Linear(512, 1), nn.Sigmoid())
print(sum(p.numel() for p in scratch_model.parameters()))

# %%
class ResidualBlock(nn.Module):
    def __init__(self, in_ch, kernel_size):
        super().__init__()
        self.conv0 = nn.Conv2d(in_ch, in_ch, kernel_size, padding="same")
        self.relu = nn.ReLU()
        self.conv1 = nn.Conv2d(in_ch, in_ch, kernel_size, padding="same")

    def forward(self, x):
        return self.conv1(self.relu(self.conv0(x))) + x


resnet9 = nn.Sequential(ConvLayer(3, 16, 3), *[ResidualBlock(16, 3) for _ in range(3)])
print(resnet9(torch.zeros(1, 3, 224, 224)).shape)

# %%
# The 1 -> 3 conv as a ConvLayer, in front of the (shared, frozen) features and head of `model`.
gray_model = nn.Sequential(ConvLayer(1, 3, 3), model)
print(gray_model(torch.zeros(1, 1, 224, 224)).shape)
