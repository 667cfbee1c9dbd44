"""inception: the handout's public checks (shapes, types, trainable layers) on the notebook's functions.

Executed in the student's kernel in the namespace of kernel_side.py, whose helpers (check, fail,
need, tensor, number, fraction, module, describe, as_array, subfolders, image_files) it uses.
Functions are tried on small models and random batches made here, never on the grader's inputs.
"""
import os

import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def _small_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 6), nn.ReLU(), nn.Linear(6, 2))


def _loaders():
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(8, 3, 8, 8, generator=generator)
    labels = torch.tensor([0, 1] * 4)
    return {split: DataLoader(TensorDataset(images, labels), batch_size=4) for split in ("train", "val")}


def _image(ctx):
    folder = os.path.join(ctx["data_dir"], "train")
    first = subfolders(folder)[0]
    return Image.open(os.path.join(folder, first, image_files(os.path.join(folder, first))[0])).convert("RGB")


@check("I1", "set_parameter_requires_grad freezes every parameter, or changes nothing")
def _requires_grad(ns, ctx):
    function = need(ns, "set_parameter_requires_grad")
    model = _small_model()
    function(model, True)
    if any(p.requires_grad for p in model.parameters()):
        fail("set_parameter_requires_grad(model, True) left some parameters trainable")
    model = _small_model()
    function(model, False)
    if not all(p.requires_grad for p in model.parameters()):
        fail("set_parameter_requires_grad(model, False) froze parameters; it should change nothing")


@check("I2", "initialize_model(3, True): (model, 299); only 3-class fc, AuxLogits.fc train")
def _initialize(ns, ctx):
    result = need(ns, "initialize_model")(3, True, use_pretrained=True)
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        fail(f"initialize_model(...) should return (model, input_size), got {describe(result)}")
    model, size = result
    module(model, "initialize_model(...)[0]")
    if size != 299:
        fail(f"initialize_model(...)[1] is {size!r}; Inception v3 takes 299 x 299 images")
    for name, inputs in (("fc", 2048), ("AuxLogits.fc", 768)):
        layer = model.get_submodule(name) if _has(model, name) else None
        if not isinstance(layer, nn.Linear) or (layer.in_features, layer.out_features) != (inputs, 3):
            fail(f"model.{name} should be Linear({inputs}, 3), got {describe(layer) if layer is not None else 'nothing'}")
    trainable = sorted({n.rsplit(".", 1)[0] for n, p in model.named_parameters() if p.requires_grad})
    if trainable != ["AuxLogits.fc", "fc"]:
        fail(f"with feature_extract=True only fc and AuxLogits.fc should be trainable, found {trainable[:6]}")


def _has(model, name):
    try:
        model.get_submodule(name)
        return True
    except AttributeError:
        return False


@check("I3", "data_transforms, augment_transforms: image -> float32 tensor 3x299x299")
def _transforms(ns, ctx):
    image = _image(ctx)
    for name in ("data_transforms", "augment_transforms"):
        transforms = need(ns, name)
        if not isinstance(transforms, dict) or set(transforms) != {"train", "val"}:
            fail(f"`{name}` should be a dict with keys 'train' and 'val', got {describe(transforms)}")
        for split in ("train", "val"):
            tensor(transforms[split](image), f"{name}['{split}'](image)", (3, 299, 299), torch.float32)


@check("I3", "'val' transforms are deterministic, the augmented 'train' one is random")
def _randomness(ns, ctx):
    image = _image(ctx)
    for name in ("data_transforms", "augment_transforms"):
        val = need(ns, name)["val"]
        if not torch.equal(val(image), val(image)):
            fail(f"`{name}['val']` gives different tensors for the same image: no random steps in 'val'")
    train = need(ns, "augment_transforms")["train"]
    first = train(image)
    if all(torch.equal(first, train(image)) for _ in range(4)):
        fail("`augment_transforms['train']` gives the same tensor every time: add RandomResizedCrop / flips")


@check("I4", "train_model(..., num_epochs=2) returns (model, 2 validation accuracies)")
def _train(ns, ctx):
    model = _small_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    result = need(ns, "train_model")(model, _loaders(), nn.CrossEntropyLoss(), optimizer, num_epochs=2,
                                     is_inception=False)
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        fail(f"train_model(...) should return (model, val_acc_history), got {describe(result)}")
    module(result[0], "train_model(...)[0]")
    history = list(result[1])
    if len(history) != 2:
        fail(f"train_model(..., num_epochs=2) returned {len(history)} validation accuracies; expected 2")
    for value in history:
        fraction(value, "a validation accuracy")


@check("I5", "confusion_matrix(model, loader, 2): 2 x 2 counts of the loader's examples")
def _confusion(ns, ctx):
    matrix = as_array(need(ns, "confusion_matrix")(_small_model().eval(), _loaders()["val"], 2),
                      "confusion_matrix(model, loader, 2)")
    if matrix.shape != (2, 2):
        fail(f"confusion_matrix(model, loader, 2) has shape {matrix.shape}; expected (2, 2)")
    if (matrix != matrix.round()).any() or matrix.sum() != 8:
        fail(f"confusion_matrix(...) should count the 8 examples, got {matrix.tolist()}")


@check("I6", "load_model(path) gives back the model save_model(model, path) wrote")
def _round_trip(ns, ctx):
    model = _small_model().eval()
    path = os.path.join(ctx["scratch"], "inception-check.pt")
    need(ns, "save_model")(model, path)
    loaded = module(need(ns, "load_model")(path), "load_model(path)").eval()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        if not torch.allclose(model(x), loaded(x)):
            fail("the model load_model(path) returns gives other outputs than the one save_model saved")
