"""wikiart: the handout's public checks (layer shapes, types, log files) on the notebook's functions.

Executed in the student's kernel in the namespace of kernel_side.py, whose helpers (check, fail,
need, tensor, number, fraction, module, describe, as_array) it uses. Functions are tried on
small models and random batches made here, never on the grader's inputs.
"""
import os

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def _small_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 3))


def _loader(seed):
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(TensorDataset(torch.randn(6, 3, 8, 8, generator=generator), torch.tensor([0, 1, 2] * 2)),
                      batch_size=3)


def _linears(model):
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


@check("W1", 'build_alexnet(3, "last") ends in Linear(4096, 3) and gives N x 3 scores')
def _last(ns, ctx):
    model = module(need(ns, "build_alexnet")(3, "last"), 'build_alexnet(3, "last")').eval()
    linears = _linears(model)
    if len(linears) != 3 or (linears[-1].in_features, linears[-1].out_features) != (4096, 3):
        fail(f'build_alexnet(3, "last") has Linear layers {[(l.in_features, l.out_features) for l in linears]}; '
             "expected AlexNet's three, the last one Linear(4096, 3)")
    with torch.no_grad():
        out = model(torch.randn(1, 3, 224, 224))
    if tuple(out.shape) != (1, 3):
        fail(f'build_alexnet(3, "last")(batch of 1) has shape {tuple(out.shape)}; expected (1, 3)')


@check("W1", 'build_alexnet(3, "last_two") keeps fc6, then one new Linear(4096, 3)')
def _last_two(ns, ctx):
    model = module(need(ns, "build_alexnet")(3, "last_two"), 'build_alexnet(3, "last_two")').eval()
    shapes = [(l.in_features, l.out_features) for l in _linears(model)]
    if shapes != [(9216, 4096), (4096, 3)]:
        fail(f'build_alexnet(3, "last_two") has Linear layers {shapes}; expected [(9216, 4096), (4096, 3)]')
    with torch.no_grad():
        out = model(torch.randn(1, 3, 224, 224))
    if tuple(out.shape) != (1, 3):
        fail(f'build_alexnet(3, "last_two")(batch of 1) has shape {tuple(out.shape)}; expected (1, 3)')


@check("W2", "criterion is the cross-entropy; make_optimizer(model, lr) is SGD at lr")
def _criterion_and_optimizer(ns, ctx):
    logits, labels = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]]), torch.tensor([0, 2])
    got = number(need(ns, "criterion")(logits, labels), "criterion(logits, labels)")
    expected = float(nn.functional.cross_entropy(logits, labels))
    if abs(got - expected) > 1e-5:
        fail(f"criterion(logits, labels) is {got:.5f}; the cross-entropy of these scores is {expected:.5f}")
    optimizer = need(ns, "make_optimizer")(_small_model(), 0.01)
    if not isinstance(optimizer, torch.optim.SGD):
        fail(f"make_optimizer(model, 0.01) should be torch.optim.SGD, got {describe(optimizer)}")
    if any(abs(group["lr"] - 0.01) > 1e-12 for group in optimizer.param_groups):
        fail("make_optimizer(model, 0.01) ignores its lr argument")


@check("W3", "evaluate(model, loader) is a fraction between 0 and 1")
def _evaluate(ns, ctx):
    fraction(need(ns, "evaluate")(_small_model(), _loader(0)), "evaluate(model, loader)")


@check("W4", "train(model, loaders, 1, log_dir) writes TensorBoard events in log_dir")
def _train(ns, ctx):
    log_dir = os.path.join(ctx["scratch"], "wikiart-runs")
    need(ns, "train")(_small_model(), {"train": _loader(1), "val": _loader(2)}, 1, log_dir)
    events = [f for _root, _dirs, files in os.walk(log_dir) for f in files if "tfevents" in f]
    if not events:
        fail(f"train(..., log_dir) wrote no TensorBoard event file under log_dir: use SummaryWriter(log_dir)")


@check("W5", "the answers are in a `## Answer W5` markdown cell")
def _answers(ns, ctx):
    if "W5" not in ctx["answers"]:
        fail("no markdown cell starts with `## Answer W5`: a TA marks the three questions from that cell")
