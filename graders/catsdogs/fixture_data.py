"""The catsdogs fixture dataset and the grader's hidden probe inputs, cut from shipped photographs.

Real layout (the course's Kaggle "Cats and Dogs" subset):
    data/catsdogs/training_set/cats/cat.1.jpg ... dogs/dog.1.jpg ...
    data/catsdogs/test_set/cats/cat.4001.jpg ... dogs/dog.4001.jpg ...
A file is a dog when its name starts with `dog`. No package ships dog photographs: the "cats" are
crops of scikit-image's cat (chelsea) and other photographs, the "dogs" crops of other photographs;
they stand in for the real classes (only the file names carry the labels). Images are small
(a few hundred pixels, like the real set's) and there are few of them (2 + 2 to train, 1 + 1 to
test), so one training epoch of the frozen VGG16 is a single step of 4 images.

Probes (hidden, the student never sees them):
    dataset/{cats,dogs}/   3 cats and 4 dogs of varied sizes and aspect ratios, for C1's items
    capped/{cats,dogs}/    502 tiny cat files and 3 dog files: the 500-per-class cap of C1
    arrays/*.npy           seeded inputs and weights for the stand-in models of C3-C6
(expected.build_probe_inputs adds the preprocessed image batches of C2 and C8.)
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from autograder.fixtures import save_jpeg, view

# split -> class folder -> [(file, photo, box, size, mirror)]
DATASET = {
    "training_set": {
        "cats": [("cat.1.jpg", "cat", (0.0, 0.0, 0.75, 1.0), (250, 200), False),
                 ("cat.2.jpg", "coffee", (0.1, 0.0, 0.9, 1.0), (260, 190), True)],
        "dogs": [("dog.1.jpg", "astronaut", (0.1, 0.0, 0.9, 0.8), (240, 220), False),
                 ("dog.2.jpg", "hopper", (0.0, 0.0, 1.0, 0.7), (200, 250), False)],
    },
    "test_set": {
        "cats": [("cat.4001.jpg", "cat", (0.3, 0.1, 1.0, 1.0), (230, 210), False)],
        "dogs": [("dog.4001.jpg", "motorcycle", (0.0, 0.1, 0.8, 1.0), (210, 230), True)],
    },
}


def build(data_dir: Path) -> None:
    for split, classes in DATASET.items():
        for folder, files in classes.items():
            for file, photo, box, size, mirror in files:
                save_jpeg(view(photo, box, size=size, mirror=mirror), data_dir / split / folder / file)


# C1 items: other photographs, upscaled and downscaled, squat and tall (a crop is far from a resize).
PROBE_DATASET = {
    "cats": [("cat.7.jpg", "cat", (0.0, 0.2, 1.0, 0.8), (330, 170)),          # wide
             ("cat.12.jpg", "clock", (0.1, 0.0, 0.7, 1.0), (150, 260)),       # tall
             ("cat.31.jpg", "flower", (0.2, 0.2, 0.8, 0.7), (120, 96))],      # upscaled
    "dogs": [("dog.3.jpg", "coins", (0.0, 0.0, 1.0, 0.6), (300, 180)),
             ("dog.8.jpg", "retina", (0.2, 0.1, 0.9, 1.0), (200, 300)),
             ("dog.15.jpg", "hubble", (0.0, 0.3, 1.0, 1.0), (280, 200)),
             ("dog.40.jpg", "colorwheel", (0.1, 0.1, 0.9, 0.9), (160, 140))],
}
CAPPED_CATS, CAPPED_DOGS = 502, 3
SEED = 587


def build_probes(probe_dir: Path) -> None:
    for folder, files in PROBE_DATASET.items():
        for file, photo, box, size in files:
            save_jpeg(view(photo, box, size=size), probe_dir / "dataset" / folder / file)
    _build_capped(probe_dir / "capped")
    _build_arrays(probe_dir / "arrays")


def _build_capped(folder: Path) -> None:
    """Tiny 8x8 JPEGs: the cap is checked on file counts, not on pictures."""
    rng = np.random.RandomState(SEED)
    for kind, count in (("cat", CAPPED_CATS), ("dog", CAPPED_DOGS)):
        for i in range(count):
            pixels = rng.randint(0, 256, size=(8, 8, 3), dtype=np.uint8)
            path = folder / f"{kind}s" / f"{kind}.{i}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(path, format="JPEG", quality=90)


def _build_arrays(folder: Path) -> None:
    """Seeded inputs and weights for the grader's stand-in models (C3-C6), float32."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(SEED)

    def save(name, array):
        np.save(folder / f"{name}.npy", np.asarray(array, dtype=np.float32), allow_pickle=False)

    # C3: loss_fn on predictions in (0, 1) and 0/1 targets, shaped like a batch of the model's output.
    save("loss_pred", rng.uniform(0.05, 0.95, size=(6, 1)))
    save("loss_target", rng.randint(0, 2, size=(6, 1)))

    # C4 train_batch: a Flatten-Linear-Sigmoid stand-in on 3x4x4 "images".
    save("train_x", rng.normal(size=(6, 3, 4, 4)))
    save("train_y", [[1], [0], [0], [1], [1], [0]])
    save("train_weight", rng.normal(scale=0.2, size=(1, 48)))
    save("train_bias", [0.1])

    # C4 accuracy: a Flatten-Dropout-Linear-Sigmoid stand-in; eval-mode outputs lie on both sides of
    # 0.5 (none near it): 4 above, 4 below. The most confident of each side is mislabelled, so the
    # accuracy is 6/8 at the 0.5 threshold, while predicting all dogs or all cats gives 4/8.
    x = rng.normal(size=(8, 3, 4, 4))
    weight = rng.normal(scale=0.3, size=(1, 48))
    logits = x.reshape(8, -1) @ weight[0]
    bias = -float(np.median(logits))
    logits = logits + bias
    assert np.abs(logits).min() > 0.05, "accuracy probe: an output lies too close to 0.5"
    labels = (logits > 0).astype(int)
    for extreme in (np.argmax(logits), np.argmin(logits)):   # two confident mistakes
        labels[extreme] = 1 - labels[extreme]
    save("acc_x", x)
    save("acc_y", labels.reshape(8, 1))
    save("acc_weight", weight)
    save("acc_bias", [bias])

    # C5 ConvLayer(in, out, k): conv weights, BatchNorm affine and running statistics, an input.
    for in_ch, out_ch, k in CONV_LAYER_CASES:
        tag = f"conv_{in_ch}_{out_ch}_{k}"
        save(f"{tag}_weight", rng.normal(scale=0.3, size=(out_ch, in_ch, k, k)))
        save(f"{tag}_bias", rng.normal(scale=0.3, size=(out_ch,)))
        save(f"{tag}_bn_weight", rng.uniform(0.5, 1.5, size=(out_ch,)))
        save(f"{tag}_bn_bias", rng.normal(scale=0.5, size=(out_ch,)))
        save(f"{tag}_bn_mean", rng.normal(scale=0.3, size=(out_ch,)))
        save(f"{tag}_bn_var", rng.uniform(0.5, 2.0, size=(out_ch,)))
        save(f"{tag}_x", rng.normal(size=(3, in_ch, 13, 13)))

    # C6 ResidualBlock(in_ch, k): two convs' weights and an input, per kernel size.
    for k in RESIDUAL_KERNELS:
        tag = f"res_{RESIDUAL_CHANNELS}_{k}"
        for i in (0, 1):
            save(f"{tag}_weight{i}", rng.normal(scale=0.3, size=(RESIDUAL_CHANNELS, RESIDUAL_CHANNELS, k, k)))
            save(f"{tag}_bias{i}", rng.normal(scale=0.3, size=(RESIDUAL_CHANNELS,)))
        save(f"{tag}_x", rng.normal(size=(2, RESIDUAL_CHANNELS, 9, 11)))


CONV_LAYER_CASES = [(3, 5, 3), (2, 4, 5)]
RESIDUAL_CHANNELS = 4
RESIDUAL_KERNELS = [1, 3, 5]
