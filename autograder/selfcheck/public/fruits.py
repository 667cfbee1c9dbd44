"""fruits: the handout's public checks (shapes, types, ranges, names) on the notebook's own values.

Executed in the student's kernel in the namespace of kernel_side.py, whose helpers (check, fail,
need, tensor, number, fraction, module, describe, as_array, subfolders) it uses without importing.
"""
import copy
import os

import numpy as np
import torch
from PIL import Image


def _classes(ctx):
    return subfolders(ctx["data_dir"])


def _gallery_image(ctx):
    first = _classes(ctx)[0]
    return Image.open(os.path.join(ctx["data_dir"], first, "gallery.jpg")).convert("RGB")


@check("F1", "transform(PIL image) is a float32 tensor of shape 3x224x224")
def _transform_shape(ns, ctx):
    tensor(need(ns, "transform")(_gallery_image(ctx)), "transform(image)", (3, 224, 224), torch.float32)


@check("F1", "transform(PIL image) is normalized (not left in [0, 1])")
def _transform_normalized(ns, ctx):
    out = need(ns, "transform")(_gallery_image(ctx))
    values = as_array(out, "transform(image)")
    if values.min() >= 0 and values.max() <= 1:
        fail("transform(image) lies in [0, 1]: normalize with the ImageNet mean and std after ToTensor")


@check("F2", "trainset and testset: one image per class, classes = the folder names")
def _datasets(ns, ctx):
    classes = _classes(ctx)
    for name in ("trainset", "testset"):
        dataset = need(ns, name)
        if len(dataset) != len(classes):
            fail(f"`{name}` holds {len(dataset)} images; data/fruits has {len(classes)} classes, one image each")
        got = list(getattr(dataset, "classes", []) or [])
        if got != classes:
            fail(f"`{name}.classes` is {got[:5]}...; expected the sorted folder names {classes[:5]}...")


@check("F2", "an item of trainset is (3x224x224 float32 tensor, class index)")
def _dataset_item(ns, ctx):
    item = need(ns, "trainset")[0]
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        fail(f"trainset[0]: expected a pair (image, label), got {describe(item)}")
    tensor(item[0], "trainset[0] image", (3, 224, 224), torch.float32)
    label = number(item[1], "trainset[0] label")
    if label != int(label) or not 0 <= label < len(_classes(ctx)):
        fail(f"trainset[0] label: expected a class index, got {item[1]!r}")


@check("F3", "network(batch of N images) gives a 512-d feature per image")
def _network(ns, ctx):
    network = copy.deepcopy(module(need(ns, "network"), "`network`")).eval()
    with torch.no_grad():
        out = network(torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0)))
    shape = tuple(getattr(out, "shape", ()))
    # N x 512, or N x 512 x 1 x 1 from a sliced Sequential: the same features.
    if not shape or shape[0] != 2 or int(np.prod(shape[1:])) != 512:
        fail(f"network(batch of 2 images) has shape {shape}; expected (2, 512): "
             "remove the last fully connected layer")


@check("F4", "train_features, test_features: class index -> float32 tensor (512,)")
def _feature_dicts(ns, ctx):
    n = len(_classes(ctx))
    for name in ("train_features", "test_features"):
        features = need(ns, name)
        if not isinstance(features, dict):
            fail(f"`{name}`: expected a dict class index -> feature, got {describe(features)}")
        if sorted(features) != list(range(n)):
            fail(f"`{name}` keys: expected the class indices 0..{n - 1}, got {sorted(features, key=str)[:6]}...")
        for key, feature in features.items():
            tensor(feature, f"`{name}`[{key}]", (512,), torch.float32)


@check("F4", "extract(testset, network) returns a feature per item, keyed by class index")
def _extract(ns, ctx):
    result = need(ns, "extract")(need(ns, "testset"), need(ns, "network"))
    n = len(_classes(ctx))
    if not isinstance(result, dict) or sorted(result) != list(range(n)):
        fail(f"extract(testset, network): expected a dict with keys 0..{n - 1}, got {describe(result)}")


@check("F5", "similarities is an O x O matrix of cosines (values in [-1, 1])")
def _similarities(ns, ctx):
    n = len(_classes(ctx))
    values = as_array(need(ns, "similarities"), "`similarities`")
    if values.shape != (n, n):
        fail(f"`similarities` has shape {values.shape}; expected ({n}, {n}), one row per test class")
    if not np.all(np.isfinite(values)) or values.min() < -1 - 1e-4 or values.max() > 1 + 1e-4:
        fail(f"`similarities` has values in [{values.min():.3g}, {values.max():.3g}]; cosines lie in [-1, 1]")


@check("F6", "the notebook displays an image (the similarity matrix)")
def _plot(ns, ctx):
    if ctx["image_outputs"] == 0:
        fail("no cell displayed an image: show `similarities` with plt.imshow (and plt.show())")


@check("F7", "accuracy is a fraction in [0, 1] that agrees with your similarities")
def _accuracy(ns, ctx):
    got = fraction(need(ns, "accuracy"), "`accuracy`")
    values = as_array(need(ns, "similarities"), "`similarities`")
    own = float(np.mean(values.argmax(axis=1) == np.arange(len(values))))
    if abs(got - own) > 1e-6:
        fail(f"`accuracy` is {got:g}, but the row maxima of your `similarities` give {own:g}")


@check("F8", "misclassified is a list of (true class name, predicted class name) pairs")
def _misclassified(ns, ctx):
    classes = _classes(ctx)
    value = need(ns, "misclassified")
    if not isinstance(value, (list, tuple)):
        fail(f"`misclassified`: expected a list of pairs, got {describe(value)}")
    for pair in value:
        if not isinstance(pair, (list, tuple)) or len(pair) != 2 or not all(p in classes for p in pair):
            fail(f"`misclassified` holds {pair!r}; expected pairs of class names such as {tuple(classes[:2])}")


@check("F8", "most_dissimilar is a pair of class names")
def _most_dissimilar(ns, ctx):
    classes = _classes(ctx)
    pair = need(ns, "most_dissimilar")
    if not isinstance(pair, (list, tuple)) or len(pair) != 2 or not all(p in classes for p in pair):
        fail(f"`most_dissimilar` is {pair!r}; expected a pair of class names such as {tuple(classes[:2])}")
