"""scene15: the handout's public checks (shapes, types, ranges, published numbers) on the notebook's values.

Executed in the student's kernel in the namespace of kernel_side.py, whose helpers (check, fail,
need, tensor, number, fraction, module, describe, as_array, subfolders, image_files) it uses.
"""
import copy
import numbers
import os
import shutil

import numpy as np
import torch
from PIL import Image
from torch import nn
from torchvision import datasets, models

VGG16_PARAMETERS = 138_357_544   # stated in the handout (S2)


def _split(ctx, split):
    """(classes, number of images) of data/scene15/<split>/."""
    folder = os.path.join(ctx["data_dir"], split)
    classes = subfolders(folder)
    return classes, sum(len(image_files(os.path.join(folder, c))) for c in classes)


def _first_image(ctx):
    folder = os.path.join(ctx["data_dir"], "train")
    first = subfolders(folder)[0]
    with Image.open(os.path.join(folder, first, image_files(os.path.join(folder, first))[0])) as image:
        image.load()
        return image


def _vgg16(ctx):
    """An ImageNet VGG16 from $TORCH_HOME, built once for the checks that need one."""
    if "_vgg16" not in ctx:
        ctx["_vgg16"] = models.vgg16(weights=models.VGG16_Weights.IMAGENET1K_V1).eval()
    return ctx["_vgg16"]


@check("S1", "predict_imagenet(grayscale image, vgg16) is (index, ImageNet class name)")
def _predict(ns, ctx):
    answer = need(ns, "predict_imagenet")(_first_image(ctx), _vgg16(ctx))
    if not isinstance(answer, (tuple, list)) or len(answer) != 2:
        fail(f"predict_imagenet(image, model): expected a pair (class index, class name), got {describe(answer)}")
    index = number(answer[0], "predict_imagenet(...)[0]")
    if index != int(index) or not 0 <= index < 1000:
        fail(f"predict_imagenet(...)[0] is {answer[0]!r}; expected an ImageNet class index 0..999")
    categories = models.VGG16_Weights.IMAGENET1K_V1.meta["categories"]
    if answer[1] != categories[int(index)]:
        fail(f"predict_imagenet(...) returned ({int(index)}, {answer[1]!r}); class {int(index)} is named "
             f"{categories[int(index)]!r} (VGG16_Weights.IMAGENET1K_V1.meta['categories'])")


@check("S2", "vgg16_param_count is 138,357,544 and vgg16_output_size is 1000")
def _numbers(ns, ctx):
    count = number(need(ns, "vgg16_param_count"), "`vgg16_param_count`")
    if count != VGG16_PARAMETERS:
        fail(f"`vgg16_param_count` is {count:,.0f}; torchvision's VGG16 has {VGG16_PARAMETERS:,} parameters")
    if number(need(ns, "vgg16_output_size"), "`vgg16_output_size`") != 1000:
        fail(f"`vgg16_output_size` is {ns['vgg16_output_size']!r}; VGG16 scores the 1000 ImageNet classes")


@check("S3", "VGG16relu7(vgg16)(batch of N images) is N x 4096 and non-negative")
def _relu7(ns, ctx):
    cls = need(ns, "VGG16relu7")
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        fail(f"`VGG16relu7` should be an nn.Module subclass, got {describe(cls)}")
    model = cls(copy.deepcopy(_vgg16(ctx))).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0)))
    values = as_array(out, "VGG16relu7(vgg16)(batch)")
    if values.shape != (2, 4096):
        fail(f"VGG16relu7(vgg16)(batch of 2) has shape {values.shape}; expected (2, 4096)")
    if values.min() < 0:
        fail("VGG16relu7(vgg16)(batch) has negative values: relu7 comes after the second ReLU of the classifier")


@check("S4", "extract_features(2 grayscale images, model): 2 x 4096, rows of norm 1")
def _extract(ns, ctx):
    # A two-image ImageFolder like the notebook's (PIL images, no transform) and a small model with
    # VGG16relu7's output size: the check is about extract_features, not about VGG16.
    folder = os.path.join(ctx["scratch"], "scene15-two")
    source = os.path.join(ctx["data_dir"], "train")
    for c in subfolders(source)[:2]:
        os.makedirs(os.path.join(folder, c), exist_ok=True)
        first = image_files(os.path.join(source, c))[0]
        shutil.copyfile(os.path.join(source, c, first), os.path.join(folder, c, first))
    model = nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(48, 4096), nn.ReLU()).eval()
    out = need(ns, "extract_features")(datasets.ImageFolder(folder), model)
    values = as_array(out, "extract_features(dataset, model)")
    if values.shape != (2, 4096):
        fail(f"extract_features(dataset of 2 images, model) has shape {values.shape}; expected (2, 4096)")
    norms = np.linalg.norm(values.astype(np.float64), axis=1)
    if not np.allclose(norms, 1.0, atol=1e-3):
        fail(f"extract_features(...) rows have L2 norms {np.round(norms, 4).tolist()}; normalize each row to 1")


@check("S5", "X_train, X_test: a 4096-d row per image; y_train, y_test: a label per row")
def _globals(ns, ctx):
    for split in ("train", "test"):
        classes, count = _split(ctx, split)
        X = as_array(need(ns, f"X_{split}"), f"`X_{split}`")
        if X.shape != (count, 4096):
            fail(f"`X_{split}` has shape {X.shape}; data/scene15/{split} has {count} images: expected ({count}, 4096)")
        labels = need(ns, f"y_{split}")
        labels = labels.tolist() if hasattr(labels, "tolist") else list(labels)
        if len(labels) != count:
            fail(f"`y_{split}` has {len(labels)} labels; expected {count}, one per row of `X_{split}`")
        # Class indices or class names both identify the class.
        unknown = [y for y in labels if not (isinstance(y, str) and y in classes) and not (
            isinstance(y, numbers.Real) and float(y).is_integer() and 0 <= y < len(classes))]
        if unknown:
            fail(f"`y_{split}` holds {unknown[0]!r}; expected class indices 0..{len(classes) - 1} (or class names)")


@check("S6", "svm is a fitted LinearSVC(C=1.0); svm_score is a fraction")
def _svm(ns, ctx):
    svm = need(ns, "svm")
    if type(svm).__name__ != "LinearSVC":
        fail(f"`svm` should be a sklearn.svm.LinearSVC, got {describe(svm)}")
    if getattr(svm, "C", None) != 1.0:
        fail(f"`svm` has C={getattr(svm, 'C', None)!r}; the handout asks for C=1.0")
    if not hasattr(svm, "coef_"):
        fail("`svm` is not fitted: call svm.fit(X_train, y_train)")
    fraction(need(ns, "svm_score"), "`svm_score`")


@check("S7", "C_scores maps at least three C > 0 to accuracies; best_C is its best C")
def _sweep(ns, ctx):
    scores = need(ns, "C_scores")
    if not isinstance(scores, dict) or len(scores) < 3:
        fail(f"`C_scores`: expected a dict C -> accuracy with at least three C, got {describe(scores)}")
    checked = {}
    for C, score in scores.items():
        if number(C, "a key of `C_scores`") <= 0:
            fail(f"`C_scores` has C = {C!r}; C must be positive")
        checked[float(C)] = fraction(score, f"`C_scores[{C!r}]`")
    best = number(need(ns, "best_C"), "`best_C`")
    top = max(checked.values())
    if checked.get(best) != top:
        fail(f"`best_C` is {best:g}, but the highest score in `C_scores` ({top:g}) is at C = "
             f"{', '.join(f'{c:g}' for c, s in checked.items() if s == top)}")
