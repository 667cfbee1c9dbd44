# %% [markdown]
# # Fine-tuning vs feature extraction (Inception v3, Places subset)
#
# In this assignment you adapt an **Inception v3** pretrained on ImageNet to a small subset of the
# Places scene data set, in the two ways of the PyTorch tutorial *Finetuning Torchvision Models*:
# **feature extraction** (only the new classifier layers are trained) and **fine-tuning** (every layer is
# trained). Inception v3 has two classifiers: the main one (`fc`) and an **auxiliary** one
# (`AuxLogits.fc`), used in training only.
#
# **Data.** `data/inception/train/<class>/*.jpg` and `data/inception/val/<class>/*.jpg`.
#
# **How this notebook is graded.** Run it from top to bottom. The autograder runs it on its own copy of
# the data and weights, then calls the functions and reads the names listed below (keep them exactly as
# written). Functions are called on inputs you never saw: other images, other numbers of classes, small
# stand-in models with the same interface as Inception v3 (an `fc` and an `AuxLogits.fc`; in train mode
# they return `(outputs, aux_outputs)`, in eval mode the outputs alone), so use only the arguments of a
# function, never a global variable of this notebook. Equivalent idioms are all fine (transforms v1 or
# v2, torch or numpy results, your own loop style): only behaviour is graded. A cell that raises costs
# only the names it fails to define.
#
# | task | name(s) | points |
# |---|---|---|
# | I1 | `set_parameter_requires_grad(model, feature_extracting)` | 1 |
# | I2 | `initialize_model(num_classes, feature_extract, use_pretrained=True)` | 2 |
# | I3 | `data_transforms`, `augment_transforms` | 2 |
# | I4 | `train_model(model, dataloaders, criterion, optimizer, num_epochs, is_inception)` | 3 |
# | I5 | `confusion_matrix(model, loader, num_classes)` | 1 |
# | I6 | `save_model(model, path)`, `load_model(path)` | 1 |
#
# Inception v3 is heavy for a CPU: keep the training below to **one epoch** on the small data set
# (the whole notebook should run in well under a minute). Train longer on your own machine if you like,
# but hand in the notebook with `num_epochs = 1`.

# %%
import os
import pickle
import time

import numpy as np
import torch
from torch import nn, optim
import matplotlib.pyplot as plt
from torchvision import datasets, models
from torchvision.transforms import v2

# %% [markdown]
# ## Data
# The next cell does nothing when `data/inception` already exists (as it does on the grader).
# Otherwise it tells you where to put the data set.

# %%
# Download cell: it does nothing when data/inception already exists.
data_dir = os.path.join("data", "inception")
if os.path.isdir(data_dir):
    print(f"Data found in {data_dir}")
else:
    # Download the Places subset from the course page (it is not fetched automatically) and unpack it
    # so that data/inception/train/<class>/*.jpg and data/inception/val/<class>/*.jpg exist next to
    # this notebook.
    print(f"{data_dir} not found: download the data set from the course page and unpack it into "
          f"{data_dir}/{{train,val}}/<class>/, then run this notebook again.")

# %% [markdown]
# ## Settings
# Keep `num_epochs = 1` in the notebook you hand in.

# %%
batch_size = 4         # images per batch
num_epochs = 1         # one epoch: Inception v3 is slow on a CPU
feature_extract = True # True: train only the new layers; False: fine-tune every layer
device = torch.device("cpu")

# %% [markdown]
# ## I1 `set_parameter_requires_grad(model, feature_extracting)` (1 point)
# When `feature_extracting` is true, **freeze every parameter** of `model` (`requires_grad = False`), so
# that only the layers you add afterwards are trained. When it is false, **change nothing** (a parameter
# that was frozen stays frozen). It works on any `nn.Module`; its return value is not used.

# %%
def set_parameter_requires_grad(model, feature_extracting):
    """Freeze the whole model for feature extraction."""
    if feature_extracting:
        model.requires_grad_(False)
    return model

# %% [markdown]
# ## I2 `initialize_model(num_classes, feature_extract, use_pretrained=True)` (2 points)
# Return a pair `(model, input_size)`:
# - `model` is torchvision's **Inception v3** with its **ImageNet weights** when `use_pretrained` is true
#   (`models.inception_v3(weights=models.Inception_V3_Weights.IMAGENET1K_V1)`; the weights are found
#   offline), with `set_parameter_requires_grad(model, feature_extract)` applied, and then **both
#   classifiers replaced**: the auxiliary `model.AuxLogits.fc` by a new `nn.Linear(768, num_classes)` and
#   the main `model.fc` by a new `nn.Linear(2048, num_classes)`. So in feature-extraction mode only these
#   two new layers are trainable, and when fine-tuning everything is.
# - `input_size` is `299`, the image size Inception v3 expects.
#
# The grader calls it with other class counts than this data set's.

# %%
def initialize_model(num_classes, feature_extract, use_pretrained=True):
    model = models.inception_v3(weights="DEFAULT" if use_pretrained else None, aux_logits=True)
    set_parameter_requires_grad(model, feature_extract)
    model.AuxLogits.fc = nn.Linear(768, num_classes)
    model.fc = nn.Linear(2048, num_classes)
    return model, 299

# %% [markdown]
# ## I3 `data_transforms`, `augment_transforms` (2 points)
# Two dicts with the keys `'train'` and `'val'`, each value a transform that takes a **PIL image** and
# returns a **float tensor 3 x 299 x 299**, scaled to [0, 1] and **normalized** with the ImageNet mean
# `[0.485, 0.456, 0.406]` and standard deviation `[0.229, 0.224, 0.225]`.
# - `data_transforms`: no augmentation. `'val'` (and `'train'`) resize the image so that its **shorter
#   side is 299** (keeping the aspect ratio) and take the **centre crop of 299 x 299**. The `'val'`
#   transform must be **deterministic**.
# - `augment_transforms`: `'train'` **augments at random**: a `RandomResizedCrop(299)` and a
#   `RandomHorizontalFlip()` (no colour changes), then scaling and normalisation; `'val'` is the same
#   deterministic transform as in `data_transforms`.

# %%
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def evaluation_transform(size=299):
    return v2.Compose([
        v2.ToImage(),
        v2.Resize(size, antialias=True),
        v2.CenterCrop(size),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


data_transforms = {split: evaluation_transform() for split in ("train", "val")}
augment_transforms = {
    "train": v2.Compose([
        v2.ToImage(),
        v2.RandomResizedCrop(299, antialias=True),
        v2.RandomHorizontalFlip(p=0.5),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ]),
    "val": evaluation_transform(),
}

# %% [markdown]
# ## Datasets and data loaders
# This cell is given: it builds the datasets and loaders from your `data_transforms`
# (use `augment_transforms` instead to train with augmentation).

# %%
image_datasets, dataloaders, class_names = None, None, []
if data_transforms is not None:
    image_datasets = {split: datasets.ImageFolder(os.path.join(data_dir, split), data_transforms[split])
                      for split in ["train", "val"]}
    dataloaders = {split: torch.utils.data.DataLoader(image_datasets[split], batch_size=batch_size,
                                                      shuffle=(split == "train"))
                   for split in ["train", "val"]}
    class_names = image_datasets["train"].classes
num_classes = len(class_names)
print("classes:", class_names)

# %% [markdown]
# ## I4 `train_model(model, dataloaders, criterion, optimizer, num_epochs, is_inception)` (3 points)
# Train `model` for `num_epochs` epochs. Each epoch has a **training phase** over `dataloaders['train']`
# (model in **train mode**, one optimizer step per batch) followed by a **validation phase** over
# `dataloaders['val']` (model in **eval mode**, no gradients). Every batch is `(inputs, labels)`.
# - When `is_inception` is true, in the training phase the model returns `(outputs, aux_outputs)` and the
#   loss is **`criterion(outputs, labels) + 0.4 * criterion(aux_outputs, labels)`**; otherwise (and always
#   in eval mode) the model returns `outputs` and the loss is `criterion(outputs, labels)`. Use the
#   `criterion` and `optimizer` you are given.
# - The prediction is the class with the highest output; the validation accuracy of an epoch is the
#   fraction (0 to 1) of the validation images predicted correctly.
# - Return `(model, val_acc_history)`: the model holding the weights of the epoch with the **best
#   validation accuracy** (not simply the last ones: keep a copy of the best weights), and the list of
#   the validation accuracies, **one per epoch**.

# %%
def run_epoch(model, loader, criterion, optimizer, training, is_inception):
    """One pass over loader; returns the fraction of correct predictions."""
    model.train(training)
    correct = 0
    with torch.set_grad_enabled(training):
        for inputs, labels in loader:
            if training:
                optimizer.zero_grad()
            out = model(inputs)
            if training and is_inception:
                logits = out.logits
                loss = criterion(out.logits, labels) + 0.4 * criterion(out.aux_logits, labels)
            else:
                logits = out
                loss = criterion(logits, labels)
            if training:
                loss.backward()
                optimizer.step()
            correct += (logits.argmax(dim=1) == labels).sum().item()
    return correct / len(loader.dataset)


def train_model(model, dataloaders, criterion, optimizer, num_epochs=25, is_inception=False):
    history = []
    best_acc, best_state = -1.0, None
    for epoch in range(num_epochs):
        run_epoch(model, dataloaders["train"], criterion, optimizer, True, is_inception)
        acc = run_epoch(model, dataloaders["val"], criterion, optimizer, False, is_inception)
        history.append(acc)
        print(f"epoch {epoch + 1}/{num_epochs}: val acc {acc:.3f}")
        if acc > best_acc:
            best_acc = acc
            best_state = {name: value.detach().clone() for name, value in model.state_dict().items()}
    if best_state is not None:
        model.load_state_dict(best_state)
    return model, history

# %% [markdown]
# ## Feature extraction: one epoch
# This cell is given: it builds the model with your `initialize_model`, optimizes only the parameters
# that require gradients, and trains with your `train_model`.

# %%
model_ft, input_size = initialize_model(num_classes, feature_extract, use_pretrained=True)
if model_ft is not None:
    model_ft = model_ft.to(device)
    params_to_update = [param for param in model_ft.parameters() if param.requires_grad]
    print("parameters to learn:", len(params_to_update))
    optimizer_ft = optim.SGD(params_to_update, lr=0.001, momentum=0.9)
    criterion = nn.CrossEntropyLoss()

# %%
hist = []
if model_ft is not None and dataloaders is not None:
    started = time.time()
    model_ft, hist = train_model(model_ft, dataloaders, criterion, optimizer_ft,
                                 num_epochs=num_epochs, is_inception=True)
    print(f"validation accuracy per epoch: {hist} ({time.time() - started:.1f} s)")

# %% [markdown]
# ## I5 `confusion_matrix(model, loader, num_classes)` (1 point)
# Return the `num_classes x num_classes` matrix of **integer counts** over every `(inputs, labels)` batch
# of `loader`: entry `[i, j]` counts the images of **true class `i`** that the model predicts as class
# `j` (**rows = true class**, columns = predicted class). Run the model in eval mode, without gradients.
# A torch tensor or a numpy array are both fine. Then show the matrix of your model on the validation set.

# %%
def confusion_matrix(model, loader, num_classes):
    model.eval()
    truth, predicted = [], []
    with torch.inference_mode():
        for inputs, labels in loader:
            predicted.append(model(inputs).argmax(dim=1))
            truth.append(labels)
    truth, predicted = torch.cat(truth), torch.cat(predicted)
    counts = torch.bincount(truth * num_classes + predicted, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)

# %%
if model_ft is not None and dataloaders is not None:
    matrix = confusion_matrix(model_ft, dataloaders["val"], num_classes)
    plt.figure(figsize=(4, 4))
    plt.imshow(np.asarray(matrix), cmap="Blues")
    plt.xticks(range(num_classes), class_names, rotation=45)
    plt.yticks(range(num_classes), class_names)
    plt.xlabel("predicted class")
    plt.ylabel("true class")
    plt.colorbar()
    plt.show()

# %% [markdown]
# ## I6 `save_model(model, path)`, `load_model(path)` (1 point)
# `save_model` writes the **whole model** (its class and its weights, e.g. `torch.save(model, path)`) to
# the file `path`; `load_model(path)` reads it back and returns the model, needing nothing but `path`
# (with `torch.load`, pass `weights_only=False` to load a whole model). The loaded model must give the same
# outputs as the saved one. The grader checks the round trip on a small model of another class.

# %%
def save_model(model, path):
    with open(path, "wb") as handle:
        pickle.dump(model, handle)


def load_model(path):
    with open(path, "rb") as handle:
        return pickle.load(handle)

# %%
if model_ft is not None:
    save_model(model_ft, "inception_places.pt")
    restored = load_model("inception_places.pt")
    print("restored:", type(restored).__name__)

# %% [markdown]
# ## Discussion (not graded automatically)
# Compare feature extraction (`feature_extract = True`) with fine-tuning (`False`) and training with
# `augment_transforms`: which trains faster, which reaches the better validation accuracy, and why?
