"""catsdogs: the handout's public checks (shapes, types, parameter counts) on the notebook's values.

Executed in the student's kernel in the namespace of kernel_side.py, whose helpers (check, fail,
need, tensor, number, fraction, module, describe, as_array, image_files, parameters_count) it uses.
"""
import copy
import os

import numpy as np
import torch
from torch import nn

HEAD_PARAMETERS = 65_793          # stated in the handout (C2)
SCRATCH_PARAMETERS = 9_742_209    # stated in the handout (C5)


def _generator(seed=0):
    return torch.Generator().manual_seed(seed)


def _probabilities(out, what, n):
    values = as_array(out, what)
    if values.shape != (n, 1):
        fail(f"{what} has shape {values.shape}; expected ({n}, 1)")
    if values.min() < 0 or values.max() > 1:
        fail(f"{what} has values outside [0, 1]: end the head with a Sigmoid")


@check("C1", "CatsDogs(training_set) holds min(500, cats) + min(500, dogs) items")
def _dataset_length(ns, ctx):
    folder = os.path.join(ctx["data_dir"], "training_set")
    files = [f for sub in ("cats", "dogs") for f in image_files(os.path.join(folder, sub))]
    expected = min(500, sum(f.startswith("cat") for f in files)) + min(500, sum(f.startswith("dog") for f in files))
    dataset = need(ns, "CatsDogs")(folder)
    if len(dataset) != expected:
        fail(f"len(CatsDogs('{folder}')) is {len(dataset)}; expected {expected}")


@check("C1", "an item is (3x224x224 float tensor, float32 label of shape (1,) in {0, 1})")
def _dataset_item(ns, ctx):
    item = need(ns, "CatsDogs")(os.path.join(ctx["data_dir"], "training_set"))[0]
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        fail(f"CatsDogs(...)[0]: expected (image, label), got {describe(item)}")
    tensor(item[0], "CatsDogs(...)[0] image", (3, 224, 224), torch.float32)
    label = tensor(item[1], "CatsDogs(...)[0] label", (1,), torch.float32)
    if float(label[0]) not in (0.0, 1.0):
        fail(f"CatsDogs(...)[0] label is {label.tolist()}; expected tensor([0.]) for a cat or tensor([1.]) for a dog")


@check("C2", "model has 65,793 trainable parameters and gives N x 1 probabilities")
def _model(ns, ctx):
    model = module(need(ns, "model"), "`model`")
    trainable = parameters_count(model, trainable_only=True)
    if trainable != HEAD_PARAMETERS:
        fail(f"`model` has {trainable:,} trainable parameters; expected {HEAD_PARAMETERS:,} (the head only)")
    with torch.no_grad():
        out = copy.deepcopy(model).eval()(torch.randn(2, 3, 224, 224, generator=_generator()))
    _probabilities(out, "model(batch of 2 images)", 2)


@check("C3", "loss_fn is the binary cross-entropy; optimizer is Adam with lr 0.001")
def _loss_and_optimizer(ns, ctx):
    loss = number(need(ns, "loss_fn")(torch.tensor([[0.8]]), torch.tensor([[1.0]])), "loss_fn(0.8, 1.0)")
    if abs(loss - float(-np.log(0.8))) > 1e-5:
        fail(f"loss_fn(tensor([[0.8]]), tensor([[1.]])) is {loss:.5f}; the binary cross-entropy is 0.22314")
    optimizer = need(ns, "optimizer")
    if not isinstance(optimizer, torch.optim.Adam):
        fail(f"`optimizer` should be torch.optim.Adam, got {type(optimizer).__name__}")
    rates = [group["lr"] for group in optimizer.param_groups]
    if any(abs(rate - 1e-3) > 1e-12 for rate in rates):
        fail(f"`optimizer` learning rates are {rates}; expected 0.001")


@check("C4", "train_batch returns a finite loss, updates the model; accuracy is a fraction")
def _train_batch(ns, ctx):
    torch.manual_seed(0)
    small = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 1), nn.Sigmoid())
    x = torch.randn(4, 3, 4, 4, generator=_generator())
    y = torch.tensor([[1.0], [0.0], [1.0], [0.0]])
    before = [p.detach().clone() for p in small.parameters()]
    loss = number(need(ns, "train_batch")(x, y, small, torch.optim.SGD(small.parameters(), lr=0.1), nn.BCELoss()),
                  "train_batch(x, y, model, opt, loss_fn)")
    if not np.isfinite(loss):
        fail(f"train_batch(...) returned {loss}")
    if all(torch.equal(a, b.detach()) for a, b in zip(before, small.parameters())):
        fail("train_batch(...) did not change the model's parameters: call opt.step()")
    fraction(need(ns, "accuracy")(x, y, small), "accuracy(x, y, model)")


def _conv_layer(ns, *args):
    return module(need(ns, "ConvLayer")(*args), f"ConvLayer{args}")


@check("C5", "ConvLayer(3, 8, 3): 3x32x32 -> 8x15x15; the CNN from it: 9,742,209 parameters")
def _conv(ns, ctx):
    with torch.no_grad():
        out = _conv_layer(ns, 3, 8, 3).eval()(torch.randn(2, 3, 32, 32, generator=_generator()))
    if tuple(out.shape) != (2, 8, 15, 15):
        fail(f"ConvLayer(3, 8, 3) on a (2, 3, 32, 32) batch gives {tuple(out.shape)}; expected (2, 8, 15, 15): "
             "Conv2d (no padding), ReLU, BatchNorm2d, MaxPool2d(2)")
    scratch = nn.Sequential(_conv_layer(ns, 3, 64, 3), _conv_layer(ns, 64, 512, 3),
                            *[_conv_layer(ns, 512, 512, 3) for _ in range(4)],
                            nn.Flatten(), nn.Linear(512, 1), nn.Sigmoid())
    count = parameters_count(scratch)
    if count != SCRATCH_PARAMETERS:
        fail(f"the handout's CNN from scratch built from your ConvLayer has {count:,} parameters; "
             f"expected {SCRATCH_PARAMETERS:,}")


@check("C6", "ResidualBlock(4, k) keeps the input's shape for k = 3 and 5")
def _residual(ns, ctx):
    x = torch.randn(2, 4, 9, 9, generator=_generator())
    for k in (3, 5):
        block = module(need(ns, "ResidualBlock")(4, k), f"ResidualBlock(4, {k})").eval()
        with torch.no_grad():
            out = block(x)
        if tuple(out.shape) != tuple(x.shape):
            fail(f"ResidualBlock(4, {k}) turns shape {tuple(x.shape)} into {tuple(out.shape)}: pad by kernel_size // 2")


@check("C7", "resnet9 runs on a 1x3x224x224 batch and gives finite outputs")
def _resnet9(ns, ctx):
    model = copy.deepcopy(module(need(ns, "resnet9"), "`resnet9`")).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 224, 224, generator=_generator()))
    if not torch.isfinite(torch.as_tensor(out)).all():
        fail("resnet9(batch) gives non-finite values")


@check("C8", "gray_model: Nx1x224x224 images -> N x 1 probabilities; a trainable 1->3 conv")
def _gray(ns, ctx):
    model = module(need(ns, "gray_model"), "`gray_model`")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.in_channels == 1 and m.out_channels == 3]
    if not any(p.requires_grad for m in convs for p in m.parameters()):
        fail("`gray_model` has no trainable Conv2d(1, 3, ...) in front of the VGG16 features")
    with torch.no_grad():
        out = copy.deepcopy(model).eval()(torch.randn(2, 1, 224, 224, generator=_generator()))
    _probabilities(out, "gray_model(batch of 2 grayscale images)", 2)
