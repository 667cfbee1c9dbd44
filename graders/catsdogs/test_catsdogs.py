"""catsdogs: frozen VGG16 + small head with BCE; a CNN from scratch; residual blocks. One test per
handout task, two for C4 (train_batch and accuracy are separate functions).

Fixtures (autograder/grading.py): `student` and `reference` are the exported values (same names,
plain data); `run` is the execution record; `figures` collects pictures for the report.

How each task is judged (contract: shared/ASSIGNMENTS.md, catsdogs):
- C1 `CatsDogs` on hidden folders: 3 cats + 4 dogs of other photographs and sizes (items matched to
  files by content, since which files and their order are free), and 502 + 3 tiny files (the cap).
- C2 / C8: the 26 ImageNet VGG16 feature tensors must be among the model's parameters, frozen
  (found by shape and a fingerprint of their values, whatever the attribute names); the trainable
  parameters count 65,793 (the head) plus, for C8, the 1 -> 3 convolution (and a BatchNorm2d(3)
  after it); the output on two grader-made images has shape (2, 1) and lies in [0, 1].
- C3 on the final `model` and `optimizer`: Adam (not AdamW), lr 1e-3 in every group, every trainable
  parameter of `model` held (compared by identity in the sandbox); `loss_fn` = BCE by value.
- C4 on grader-made stand-in models with the handout model's interface, never on the student's VGG16.
- C5 / C6: the grader's seeded weights are copied into the student's layers, outputs compared
  with the reference's under the same weights. C7: `resnet9` runs on one 3x224x224 image and holds
  three of the student's own ResidualBlock modules after a Conv2d on the 3 image channels.

Tolerances, and why:
- C1 images: within 1.0 per value and 0.05 on average (ImageNet-normalised units). Measured on the
  probe images against the reference's PIL bilinear resize: a tensor resize (antialiased) differs by
  at most 0.02, a non-antialiased bilinear resize (cv2-like, uint8 or float) by up to 0.5 per value
  and 0.016 on average, scikit-image's resize by 0.64 / 0.016, bicubic by 0.54 / 0.025. Mistakes are
  far off: a centre crop 0.96+ / 0.16+, no normalisation 1.5+ / 0.25+, swapped mean/std 0.7+ / 0.25+,
  nearest-neighbour 0.07 on average.
- Parameter fingerprints: sums within 1e-6 relative: the same weights give the same sums.
- C3 loss, C4 losses and parameters: within 1e-5 (float32 arithmetic on values of order 1).
- C4 accuracy: within 1e-6 (it is a fraction of 8).
- C5 / C6 outputs: within 1e-4 (float32 convolutions in another order differ by ~1e-6).
No double penalty: C3 is judged on the student's own `model`; C4 never uses the student's model;
C7 uses the student's own ConvLayer and ResidualBlock whatever C5 and C6 say of them.
"""
import numpy as np
import pytest

from autograder.checks import array, close, collect, describe, fail, number, same_shape

HEAD_PARAMETERS = 65_793
SCRATCH_PARAMETERS = 9_742_209
IMAGE_ATOL, IMAGE_MEAN_ATOL = 1.0, 0.05
LAYER_ATOL = 1e-4
CONV_LAYER_CASES = [(3, 5, 3), (2, 4, 5)]
RESIDUAL_KERNELS = [1, 3, 5]
RESIDUAL_INPUT_SHAPE = (2, 4, 9, 11)


@pytest.mark.task("C1", visibility="after_published")
def test_dataset(student, reference, figures):
    """C1 CatsDogs(folder): first 500 cats and 500 dogs, resized normalised images, float labels (unseen folders)"""
    expected_items = reference.get("CatsDogs:items")
    got = collect(student, "CatsDogs:items")
    n = len(expected_items)
    what = "CatsDogs(a folder with 3 cats and 4 dogs)"
    if got["len"] != n:
        fail(f"len({what}): expected {n}, got {got['len']}")
    used: dict[int, int] = {}
    for index, item in enumerate(got["items"]):
        if not isinstance(item, (list, tuple)) or len(item) != 2:
            fail(f"{what}[{index}]: expected a pair (image, label), got {describe(item)}")
        image = array(item[0], f"{what}[{index}] image")
        same_shape(image, (3, 224, 224), f"{what}[{index}] image")
        if image.dtype.kind != "f":
            fail(f"{what}[{index}] image: expected float values, got dtype {image.dtype}")
        label = item[1]
        if not isinstance(label, dict) or "array" not in label:
            fail(f"{what}[{index}] label: expected a float32 tensor of shape (1,) such as tensor([1.]), "
                 f"got {describe(label)}")
        if label["dtype"] != "float32" or list(label["shape"]) != [1]:
            fail(f"{what}[{index}] label: expected a float32 tensor of shape (1,) such as tensor([1.]), "
                 f"got a {label['array']} of shape {tuple(label['shape'])} and dtype {label['dtype']}")
        distances = [float(np.mean(np.abs(image.astype(np.float64) - e["image"]))) for e in expected_items]
        match = int(np.argmin(distances))
        file = expected_items[match]["file"]
        if index == 0:
            figures.images(f"C1: item 0 of your dataset (closest to {file}; mean over channels) and the "
                           "reference's item for that file",
                           image.mean(axis=0), expected_items[match]["image"].mean(axis=0))
        if distances[match] > IMAGE_MEAN_ATOL:
            fail(f"{what}[{index}] image matches none of the folder's images preprocessed as the handout says "
                 f"(closest: {file}, mean difference {distances[match]:.3f}, allowed {IMAGE_MEAN_ATOL}): "
                 "resize to 224x224 without cropping, scale to [0, 1], normalise with the ImageNet mean and std")
        close(image, expected_items[match]["image"], f"{what}[{index}] image ({file})",
              atol=IMAGE_ATOL, mean_atol=IMAGE_MEAN_ATOL)
        if match in used:
            fail(f"{what}: items {used[match]} and {index} are both the image {file}; each file must appear once")
        used[match] = index
        expected_label = float(expected_items[match]["label"][0])
        if label["values"][0] != expected_label:
            kind = "a dog: its name starts with 'dog'" if expected_label == 1.0 else "a cat"
            fail(f"{what}[{index}] ({file}) has label {label['values'][0]}, expected {expected_label} ({kind})")
    capped, expected = collect(student, "CatsDogs:capped"), reference.get("CatsDogs:capped")
    what = "CatsDogs(a folder with 502 cats and 3 dogs)"
    if capped["len"] != expected["len"]:
        fail(f"len({what}): expected {expected['len']} (at most the first 500 of each class), got {capped['len']}")
    if (capped["cats"], capped["dogs"]) != (expected["cats"], expected["dogs"]):
        fail(f"{what}: expected {expected['cats']} cat labels (0.0) and {expected['dogs']} dog labels (1.0), "
             f"got {capped['cats']} and {capped['dogs']} ({capped['other']} other)")


@pytest.mark.task("C2", visibility="after_published")
def test_model(student, reference):
    """C2 model: ImageNet VGG16 features frozen, pooled to 1x1, a 65,793-parameter head, (N, 1) output in [0, 1]"""
    _check_vgg16_features(student, reference, "model:parameters", "`model`")
    rows = collect(student, "model:parameters")
    trainable = sum(int(np.prod(r["shape"])) for r in rows if r["trainable"])
    if trainable != HEAD_PARAMETERS:
        fail(f"`model` has {trainable:,} trainable parameters, expected {HEAD_PARAMETERS:,}: only the new head "
             "Flatten-Linear(512, 128)-ReLU-Dropout(0.2)-Linear(128, 1)-Sigmoid after avgpool to 1x1")
    _check_probabilities(collect(student, "model:output"), "model(2 grader images of 3x224x224)", 2)


@pytest.mark.task("C3", visibility="after_published")
def test_loss_and_optimizer(student, reference):
    """C3 loss_fn and optimizer: BCE; Adam with lr 1e-3 holding every trainable parameter of the final model"""
    summary = collect(student, "optimizer:summary")
    if not summary["adam"]:
        fail(f"`optimizer` is {summary['class']}, expected torch.optim.Adam")
    if any(_differs(lr, 1e-3, 1e-12) for lr in summary["lrs"]):
        fail(f"`optimizer` learning rates: expected 0.001 in every parameter group, got {summary['lrs']}")
    if summary["held"] != summary["trainable"]:
        fail(f"`optimizer` holds {summary['held']} of the {summary['trainable']} trainable parameter tensors of "
             f"the final `model` ({summary['held_numel']:,} of {summary['trainable_numel']:,} values): make it "
             "over model.parameters() after the head is in place")
    got = number(collect(student, "loss_fn:value"), "loss_fn(predictions, targets)")
    expected = reference.get("loss_fn:value")
    if _differs(got, expected, 1e-5):
        fail(f"loss_fn(predictions, targets) on grader probabilities: expected the binary cross-entropy "
             f"{expected:.6f} (mean over the batch), got {got:.6f}")


@pytest.mark.task("C4", visibility="after_published")
def test_train_batch(student, reference):
    """C4 train_batch(x, y, model, opt, loss_fn): one step in train mode, returns the loss (a stand-in model)"""
    got, expected = collect(student, "train_batch:probe"), reference.get("train_batch:probe")
    what = "train_batch(x, y, model, opt, loss_fn)"
    for step, modes in enumerate(got["modes"]):
        if not modes:
            fail(f"{what} did not call `model` (call {step + 1})")
        if not all(modes):
            fail(f"{what} ran the model in eval mode (it was handed a model in eval mode): call model.train()")
    for step in range(2):
        loss = got["losses"][step]
        if _differs(loss, expected["losses"][step], 1e-5):
            fail(f"{what}, call {step + 1}: returned {loss:.6f}, expected the batch loss before the step "
                 f"{expected['losses'][step]:.6f}")
    first = array(got["parameters"][0], "the model's parameters after one call")
    if first.shape == expected["initial"].shape and np.allclose(first, expected["initial"], atol=1e-7, rtol=0):
        fail(f"{what} did not change the model's parameters: call opt.step() on the `opt` it is given")
    close(first, expected["parameters"][0], f"{what}: the model's parameters after one call", atol=1e-5)
    close(array(got["parameters"][1], "parameters"), expected["parameters"][1],
          f"{what}: the model's parameters after a second call (gradients must be zeroed between steps)", atol=1e-5)


@pytest.mark.task("C4", visibility="after_published")
def test_accuracy(student, reference):
    """C4 accuracy(x, y, model): fraction correct at threshold 0.5, eval mode, no gradients (a stand-in model)"""
    got, expected = collect(student, "accuracy:probe"), reference.get("accuracy:probe")
    what = "accuracy(x, y, model)"
    if not got["modes"]:
        fail(f"{what} did not call `model`")
    if any(got["modes"]):
        fail(f"{what} ran the model in train mode (it was handed a model in train mode): call model.eval()")
    if any(got["grad_enabled"]):
        fail(f"{what} ran the model with gradients enabled: use torch.no_grad()")
    value = number(got["value"], what)
    if _differs(value, expected["value"], 1e-6):
        fail(f"{what} on 8 grader examples: expected the fraction {expected['value']:.4f} "
             f"(prediction > 0.5 compared with the labels), got {value:.4f}")


@pytest.mark.task("C5", visibility="after_published")
def test_conv_layer(student, reference):
    """C5 ConvLayer(in_ch, out_ch, k): Conv2d-ReLU-BatchNorm2d-MaxPool2d(2); 9,742,209-parameter CNN from it"""
    for in_ch, out_ch, k in CONV_LAYER_CASES:
        name = f"ConvLayer:{in_ch}_{out_ch}_{k}"
        got, expected = collect(student, name), reference.get(name)
        for mode in ("eval", "train"):
            what = (f"ConvLayer({in_ch}, {out_ch}, {k}) with the grader's weights, {mode} mode, "
                    f"on x of shape (3, {in_ch}, 13, 13)")
            close(array(got[mode], what), expected[mode], what, atol=LAYER_ATOL)
    count = number(collect(student, "ConvLayer:scratch_parameters"), "parameters of the CNN from scratch")
    if int(count) != SCRATCH_PARAMETERS:
        fail(f"the CNN from scratch built from your ConvLayer (ConvLayer(3, 64, 3), ConvLayer(64, 512, 3), "
             f"4 x ConvLayer(512, 512, 3), Flatten, Linear(512, 1), Sigmoid) has {int(count):,} parameters, "
             f"expected {SCRATCH_PARAMETERS:,}")


@pytest.mark.task("C6", visibility="after_published")
def test_residual_block(student, reference):
    """C6 ResidualBlock(in_ch, k): conv1(relu(conv0(x))) + x, same shape, for kernel sizes 1, 3 and 5"""
    for k in RESIDUAL_KERNELS:
        what = f"ResidualBlock(4, {k}) with the grader's weights on x of shape {RESIDUAL_INPUT_SHAPE}"
        got = array(collect(student, f"ResidualBlock:{k}"), what)
        if tuple(got.shape) != RESIDUAL_INPUT_SHAPE:
            fail(f"{what}: the output has shape {tuple(got.shape)}, expected the input's "
                 f"{RESIDUAL_INPUT_SHAPE} (pad each convolution by kernel_size // 2)")
        close(got, reference.get(f"ResidualBlock:{k}"), what, atol=LAYER_ATOL)


@pytest.mark.task("C7", visibility="after_published")
def test_resnet9(student):
    """C7 resnet9: a ConvLayer then three of your ResidualBlocks, runs on a 1x3x224x224 batch"""
    got = collect(student, "resnet9:probe")
    output = array(got["output"], "resnet9(1 image of 3x224x224)")
    if output.size == 0 or not np.all(np.isfinite(output)):
        fail(f"resnet9(1 image of 3x224x224): expected finite outputs, got {describe(output)}")
    if got["blocks"] is not None and got["blocks"] != 3:
        fail(f"`resnet9` holds {got['blocks']} ResidualBlock modules, expected 3")
    if got["stem_convs"] < 1:
        fail("`resnet9` has no Conv2d on the 3 image channels outside its residual blocks: "
             "start it with ConvLayer(3, C, k)")


@pytest.mark.task("C8", visibility="after_published")
def test_gray_model(student, reference):
    """C8 gray_model: a trainable 1->3 conv before the frozen ImageNet VGG16 features, the head; (N, 1) output"""
    _check_vgg16_features(student, reference, "gray_model:parameters", "`gray_model`")
    front = collect(student, "gray_model:front")
    if front["trainable_1to3_convs"] < 1:
        fail("`gray_model` has no trainable Conv2d from 1 to 3 channels in front of the VGG16 features")
    if front["rest"] != HEAD_PARAMETERS:
        fail(f"besides the 1 -> 3 convolution, `gray_model` has {front['rest']:,} trainable parameters; "
             f"expected only the head's {HEAD_PARAMETERS:,}")
    _check_probabilities(collect(student, "gray_model:output"), "gray_model(2 grader images of 1x224x224)", 2)


# -- shared checks ------------------------------------------------------------------------------
def _differs(got, expected, tolerance) -> bool:
    """True unless |got - expected| <= tolerance (a NaN differs from everything)."""
    return not abs(got - expected) <= tolerance


def _check_vgg16_features(student, reference, name, what):
    rows = collect(student, name)
    if not isinstance(rows, list):
        fail(f"{what}: expected a model, got {describe(rows)}")
    features = reference.get("vgg16:features")
    missing, trainable = [], []
    for feature in features:
        row = next((r for r in rows if _same_values(r, feature)), None)
        if row is None:
            missing.append(feature)
        elif row["trainable"]:
            trainable.append(feature)
    # A trainable tensor of a feature's shape that no longer holds its values: trained, not frozen.
    changed = [f for f in missing if any(r["trainable"] and list(r["shape"]) == list(f["shape"]) for r in rows)]
    if trainable or changed:
        fail(f"{what}: {len(trainable) + len(changed)} of the {len(features)} VGG16 feature tensors are trainable"
             f"{' (and no longer hold the ImageNet values)' if changed else ''}; freeze them (requires_grad = False)")
    if missing:
        fail(f"{what} does not hold the ImageNet VGG16 convolution weights ({len(missing)} of the "
             f"{len(features)} feature tensors not found, e.g. one of shape {tuple(missing[0]['shape'])}): "
             "load models.vgg16(weights=models.VGG16_Weights.IMAGENET1K_V1) and keep its features unchanged")


def _same_values(row, feature) -> bool:
    if list(row["shape"]) != list(feature["shape"]):
        return False
    scale = max(1.0, abs(feature["abs"]))
    return (abs(row["sum"] - feature["sum"]) <= 1e-6 * scale and abs(row["abs"] - feature["abs"]) <= 1e-6 * scale
            and np.allclose(row["head"], feature["head"], rtol=1e-6, atol=1e-9))


def _check_probabilities(value, what, n):
    output = array(value, what)
    same_shape(output, (n, 1), what)
    if not np.all(np.isfinite(output)) or output.min() < 0 or output.max() > 1:
        fail(f"{what}: expected probabilities in [0, 1] (end with a Sigmoid), got values from "
             f"{float(np.nanmin(output)):.4g} to {float(np.nanmax(output)):.4g}")
