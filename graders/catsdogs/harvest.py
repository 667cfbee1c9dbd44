"""Runs INSIDE the sandbox kernel after the student's cells: collects what the catsdogs graders need.

`ns` is a snapshot of the student's top-level names, `ex` an Exporter (autograder/artefacts/encode.py),
`probes` the folder of grader-made inputs the student never saw. Nothing here knows the answers:
it calls the student's code on hidden inputs (other image folders, tiny stand-in models with the
same interface, seeded weights copied into the student's layers) and exports plain data. Each value
is exported on its own, so one failure costs only the checks that need it.

The stand-in models below are duplicated in expected.py, which runs the reference through them.
"""
import os

import numpy as np
import torch
from torch import nn

SCRATCH_LAYERS = [(3, 64, 3), (64, 512, 3), (512, 512, 3), (512, 512, 3), (512, 512, 3), (512, 512, 3)]
CONV_LAYER_CASES = [(3, 5, 3), (2, 4, 5)]
RESIDUAL_CHANNELS = 4
RESIDUAL_KERNELS = [1, 3, 5]


def harvest(ns, ex, probes):
    torch.manual_seed(0)
    get = lambda name: require(ns, name)  # noqa: E731  (require comes from encode.py)
    load = lambda name: torch.from_numpy(np.load(os.path.join(probes, "arrays", name + ".npy")))  # noqa: E731

    # C2 / C3 first, on the final `model` and `optimizer` as the student left them.
    ex.value("model:parameters", lambda: _parameters(get("model"), "model"))
    ex.value("optimizer:summary", lambda: _optimizer_summary(get("optimizer"), get("model")))
    ex.value("loss_fn:value", lambda: float(get("loss_fn")(load("loss_pred"), load("loss_target"))))
    ex.value("model:output", lambda: _forward(get("model"), load("model_input"), "model"))

    # C1: the student's dataset class on folders it never saw.
    ex.value("CatsDogs:items", lambda: _items(get("CatsDogs"), os.path.join(probes, "dataset")))
    ex.value("CatsDogs:capped", lambda: _label_counts(get("CatsDogs"), os.path.join(probes, "capped")))

    # C4: the student's functions on grader-made stand-in models and batches.
    ex.value("train_batch:probe", lambda: _train_batch_probe(get("train_batch"), load))
    ex.value("accuracy:probe", lambda: _accuracy_probe(get("accuracy"), load))

    # C5: ConvLayer with the grader's weights; the handout's from-scratch model built from it.
    for in_ch, out_ch, k in CONV_LAYER_CASES:
        ex.value(f"ConvLayer:{in_ch}_{out_ch}_{k}",
                 lambda: _conv_layer_probe(get("ConvLayer"), load, in_ch, out_ch, k))
    ex.value("ConvLayer:scratch_parameters", lambda: _scratch_parameters(get("ConvLayer")))

    # C6: ResidualBlock with the grader's weights, several odd kernel sizes.
    for k in RESIDUAL_KERNELS:
        ex.value(f"ResidualBlock:{k}", lambda: _residual_probe(get("ResidualBlock"), load, k))

    # C7: resnet9 on one 3x224x224 image; how many of the student's residual blocks it holds.
    ex.value("resnet9:probe", lambda: _resnet9_probe(get("resnet9"), ns.get("ResidualBlock"),
                                                     load("model_input")[:1]))

    # C8: gray_model's parameters and its output on 1-channel images.
    ex.value("gray_model:parameters", lambda: _parameters(get("gray_model"), "gray_model"))
    ex.value("gray_model:front", lambda: _gray_front(get("gray_model")))
    ex.value("gray_model:output", lambda: _forward(get("gray_model"), load("gray_input"), "gray_model"))
    ex.write()


# -- C2, C3, C8: parameters, optimizer, forward ---------------------------------------------------
def _module(value, name):
    if not isinstance(value, nn.Module):
        raise TypeError(f"`{name}` should be an nn.Module, got {type(value).__name__}")
    return value


def _parameters(model, name):
    """Every distinct parameter: shape, trainable, and a fingerprint of its values."""
    rows = []
    for parameter in _module(model, name).parameters():
        values = torch.Tensor.detach(parameter).double().reshape(-1)
        rows.append({"shape": [int(s) for s in parameter.shape], "trainable": bool(parameter.requires_grad),
                     "sum": float(values.sum()), "abs": float(values.abs().sum()),
                     "head": [float(v) for v in values[:8]]})
    return rows


def _optimizer_summary(optimizer, model):
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"`optimizer` should be a torch.optim optimizer, got {type(optimizer).__name__}")
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    trainable = [p for p in _module(model, "model").parameters() if p.requires_grad]
    return {"class": type(optimizer).__name__,
            "adam": isinstance(optimizer, torch.optim.Adam) and not isinstance(optimizer, torch.optim.AdamW)
            and not any(g.get("decoupled_weight_decay", False) for g in optimizer.param_groups),
            "lrs": [float(group["lr"]) for group in optimizer.param_groups],
            "trainable": len(trainable), "held": sum(id(p) in held for p in trainable),
            "trainable_numel": sum(p.numel() for p in trainable),
            "held_numel": sum(p.numel() for p in trainable if id(p) in held)}


def _forward(model, batch, name):
    model = _module(model, name)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return _exportable(model(batch.clone()))
    finally:
        model.train(was_training)


def _gray_front(model):
    """The trainable parameters in 1 -> 3 convolutions (and a BatchNorm2d(3) after one), and the rest."""
    front, rest = 0, 0
    for module in _module(model, "gray_model").modules():
        own = [p for p in module.parameters(recurse=False) if p.requires_grad]
        count = sum(p.numel() for p in own)
        is_front = (isinstance(module, nn.Conv2d) and module.in_channels == 1 and module.out_channels == 3) or \
                   (isinstance(module, nn.BatchNorm2d) and module.num_features == 3)
        if is_front:
            front += count
        else:
            rest += count
    convs = sum(isinstance(m, nn.Conv2d) and m.in_channels == 1 and m.out_channels == 3
                and m.weight.requires_grad for m in model.modules())
    return {"front": front, "rest": rest, "trainable_1to3_convs": convs}


# -- C1 -----------------------------------------------------------------------------------------
def _items(dataset_class, folder):
    dataset = dataset_class(folder)
    length = len(dataset)
    items = []
    for index in range(min(length, 20)):
        image, label = dataset[index]
        items.append((_exportable(image), _label_record(label)))
    return {"len": length, "items": items}


def _label_record(label):
    """A label's shape, dtype and values (a 0-d label must not look like a (1,) one once exported)."""
    if isinstance(label, torch.Tensor):
        values = torch.Tensor.detach(label).reshape(-1)[:4]
        return {"array": "tensor", "shape": [int(s) for s in label.shape],
                "dtype": str(label.dtype).replace("torch.", ""), "values": [float(v) for v in values]}
    if isinstance(label, np.ndarray):
        return {"array": "ndarray", "shape": [int(s) for s in label.shape], "dtype": str(label.dtype),
                "values": [float(v) for v in label.reshape(-1)[:4]]}
    return label


def _exportable(value):
    """0-d tensors and arrays as shape (1,): the exporter writes 0-d arrays as 1-d (see encode.py)."""
    if isinstance(value, (torch.Tensor, np.ndarray)) and value.ndim == 0:
        return value.reshape(1)
    return value


def _label_counts(dataset_class, folder):
    dataset = dataset_class(folder)
    length = len(dataset)
    counts = {"len": length, "cats": 0, "dogs": 0, "other": 0}
    for index in range(min(length, 1100)):
        label = torch.as_tensor(dataset[index][1]).reshape(-1)
        value = float(label[0]) if label.numel() == 1 else None
        counts["dogs" if value == 1.0 else "cats" if value == 0.0 else "other"] += 1
    return counts


# -- C4: stand-ins with the interface of the handout's model (images in, (N, 1) probability out) ---
class _TrainStandIn(nn.Module):
    def __init__(self, weight, bias):
        super().__init__()
        self.flatten, self.linear, self.sigmoid = nn.Flatten(), nn.Linear(weight.shape[1], 1), nn.Sigmoid()
        with torch.no_grad():
            self.linear.weight.copy_(weight)
            self.linear.bias.copy_(bias)
        self.modes, self.grad_enabled = [], []

    def forward(self, x):
        self.modes.append(bool(self.training))
        self.grad_enabled.append(bool(torch.is_grad_enabled()))
        return self.sigmoid(self.linear(self.flatten(x)))


class _AccuracyStandIn(_TrainStandIn):
    def __init__(self, weight, bias):
        super().__init__(weight, bias)
        self.dropout = nn.Dropout(0.5)

    def forward(self, x):
        self.modes.append(bool(self.training))
        self.grad_enabled.append(bool(torch.is_grad_enabled()))
        return self.sigmoid(self.linear(self.dropout(self.flatten(x))))


def _train_batch_probe(train_batch, load):
    model = _TrainStandIn(load("train_weight"), load("train_bias"))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    x, y = load("train_x"), load("train_y")
    losses, parameters, modes = [], [], []
    for _step in range(2):  # twice: a missing zero_grad shows in the second step
        model.eval()        # train_batch must put the model in train mode itself
        model.modes.clear()
        returned = train_batch(x.clone(), y.clone(), model, optimizer, nn.BCELoss())
        losses.append(float(returned))
        modes.append(list(model.modes))
        parameters.append(torch.cat([torch.Tensor.detach(p).reshape(-1) for p in model.parameters()]).clone())
    return {"losses": losses, "modes": modes, "parameters": parameters}


def _accuracy_probe(accuracy, load):
    model = _AccuracyStandIn(load("acc_weight"), load("acc_bias"))
    model.train()           # accuracy must put the model in eval mode itself
    value = accuracy(load("acc_x"), load("acc_y"), model)
    if isinstance(value, torch.Tensor):
        value = torch.Tensor.detach(value)
    return {"value": _exportable(value), "modes": list(model.modes), "grad_enabled": list(model.grad_enabled)}


# -- C5, C6, C7: the student's layers with the grader's weights ------------------------------------
def _copy(parameter, value, what):
    if parameter is None:
        raise ValueError(f"{what} is missing (a Conv2d/BatchNorm2d with default arguments has it)")
    if tuple(parameter.shape) != tuple(value.shape):
        raise ValueError(f"{what} has shape {tuple(parameter.shape)}, expected {tuple(value.shape)}")
    with torch.no_grad():
        parameter.copy_(value)


def _conv_layer_probe(conv_layer, load, in_ch, out_ch, k):
    layer = _module(conv_layer(in_ch, out_ch, k), f"ConvLayer({in_ch}, {out_ch}, {k})")
    convs = [m for m in layer.modules() if isinstance(m, nn.Conv2d)]
    norms = [m for m in layer.modules() if isinstance(m, nn.BatchNorm2d)]
    if len(convs) != 1 or len(norms) != 1:
        raise ValueError(f"ConvLayer({in_ch}, {out_ch}, {k}) should hold one Conv2d and one BatchNorm2d, "
                         f"it holds {len(convs)} Conv2d and {len(norms)} BatchNorm2d")
    tag = f"conv_{in_ch}_{out_ch}_{k}"
    conv, norm = convs[0], norms[0]
    _copy(conv.weight, load(f"{tag}_weight"), "the Conv2d weight")
    _copy(conv.bias, load(f"{tag}_bias"), "the Conv2d bias")
    _copy(norm.weight, load(f"{tag}_bn_weight"), "the BatchNorm2d weight")
    _copy(norm.bias, load(f"{tag}_bn_bias"), "the BatchNorm2d bias")
    _copy(norm.running_mean, load(f"{tag}_bn_mean"), "the BatchNorm2d running_mean")
    _copy(norm.running_var, load(f"{tag}_bn_var"), "the BatchNorm2d running_var")
    x = load(f"{tag}_x")
    with torch.no_grad():
        layer.eval()
        evaluated = layer(x.clone())
        layer.train()
        trained = layer(x.clone())
    return {"eval": _exportable(evaluated), "train": _exportable(trained)}


def _scratch_parameters(conv_layer):
    layers = [_module(conv_layer(*spec), f"ConvLayer{spec}") for spec in SCRATCH_LAYERS]
    model = nn.Sequential(*layers, nn.Flatten(), nn.Linear(512, 1), nn.Sigmoid())
    return sum(p.numel() for p in model.parameters())


def _residual_probe(residual_block, load, k):
    c = RESIDUAL_CHANNELS
    block = _module(residual_block(c, k), f"ResidualBlock({c}, {k})")
    convs = [m for m in block.modules() if isinstance(m, nn.Conv2d)]
    if len(convs) != 2:
        raise ValueError(f"ResidualBlock({c}, {k}) should hold exactly two Conv2d, it holds {len(convs)}")
    tag = f"res_{c}_{k}"
    for i, conv in enumerate(convs):
        _copy(conv.weight, load(f"{tag}_weight{i}"), f"the weight of its Conv2d number {i}")
        _copy(conv.bias, load(f"{tag}_bias{i}"), f"the bias of its Conv2d number {i}")
    block.eval()
    with torch.no_grad():
        return _exportable(block(load(f"{tag}_x")))


def _resnet9_probe(network, residual_block, image):
    network = _module(network, "resnet9")
    was_training = network.training
    network.eval()
    try:
        with torch.no_grad():
            output = network(image.clone())
    finally:
        network.train(was_training)
    blocks = None
    try:  # the class of the student's own residual blocks (not a torch.nn container)
        block_type = type(residual_block(4, 3))
        if not block_type.__module__.startswith("torch."):
            blocks = sum(isinstance(m, block_type) for m in network.modules())
    except Exception:  # noqa: BLE001 - a broken ResidualBlock costs C6, not C7
        pass
    in_blocks = set()
    if blocks:
        for m in network.modules():
            if isinstance(m, block_type):
                in_blocks.update(id(c) for c in m.modules())
    stem = [m for m in network.modules()
            if isinstance(m, nn.Conv2d) and m.in_channels == 3 and id(m) not in in_blocks]
    return {"output": _exportable(output), "blocks": blocks, "stem_convs": len(stem)}
