"""The inception fixture dataset and the grader's hidden probe inputs, cut from shipped photographs.

Real layout: data/inception/{train,val}/<class>/*.jpg, a Places-like subset. Each class is one
photograph of a scene (a field of grass, a pagoda, a rocket on its launch pad); its images are
different crops of it, mirrored or not, the validation crops other than the training ones. Small
images (the notebook resizes them to 299), so a training epoch takes seconds on a CPU.

Probes (never shown to the student):
- transform/: other photographs, other shapes (wide, tall and grey, small) and a solid colour;
- real/: six images for a few real Inception v3 steps (expected.py turns them into one batch file);
- tiny.npz: the tiny Inception-like model's weights and data (I4). Its validation points were chosen
  (from the reference's trajectory) so that validation accuracy peaks uniquely at epoch 2 of 4:
  a loop that returns the last weights, or weights the auxiliary loss otherwise, is told apart;
- real_heads.npz: the real model's two fresh 2-class heads; tiny_norm.npz: the model saved and
  loaded in I6 (with batch-norm statistics); scores.npz: inputs whose argmax is the prediction (I5).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from autograder.fixtures import save_jpeg, view

# class -> photograph
CLASSES = {"field": "grass", "launch_pad": "rocket", "pagoda": "china"}
TRAIN_BOXES = [(0.0, 0.0, 0.7, 0.7), (0.3, 0.0, 1.0, 0.75), (0.0, 0.25, 0.75, 1.0), (0.1, 0.1, 0.9, 0.9)]
VAL_BOXES = [(0.2, 0.2, 1.0, 1.0), (0.05, 0.0, 0.95, 0.8)]


def build(data_dir: Path) -> None:
    for name, photo_name in CLASSES.items():
        for i, box in enumerate(TRAIN_BOXES):
            image = view(photo_name, box, size=(200, 150), mirror=bool(i % 2))
            save_jpeg(image, data_dir / "train" / name / f"{name}_{i:02d}.jpg")
        for i, box in enumerate(VAL_BOXES):
            image = view(photo_name, box, size=(180, 160), mirror=bool(i % 2))
            save_jpeg(image, data_dir / "val" / name / f"{name}_{i + 10:02d}.jpg")


# I3: file -> (photo, box, size, gray); the solid colour image checks the normalisation exactly.
TRANSFORM_PROBES = {
    "wide.jpg": ("coffee", (0.0, 0.1, 1.0, 0.9), (420, 230), False),
    "tall.jpg": ("astronaut", (0.2, 0.0, 0.7, 1.0), (210, 340), True),
    "small.jpg": ("cat", (0.1, 0.0, 0.8, 1.0), (160, 120), False),
}
SOLID_COLOUR = (200, 100, 50)
# I4, real model: (photo, label) for the training and validation batches.
REAL_TRAIN = [("hubble", 0), ("motorcycle", 1), ("clock", 0), ("flower", 1)]
REAL_VAL = [("coins", 0), ("hopper", 1)]

# I4, tiny model: validation points and labels found with the reference (see the module docstring).
TINY_VAL_X = [[1.06, -1.71, -0.52, -1.07], [1.58, -0.36, 0.51, -1.84], [0.28, 1.17, -1.70, -1.08],
              [-1.04, 2.22, 0.20, 0.11], [-0.39, -0.58, 2.02, 2.36], [0.19, -1.51, 0.24, 0.05]]
TINY_VAL_Y = [1, 1, 2, 0, 1, 1]


def build_probes(probe_dir: Path) -> None:
    for file, (photo_name, box, size, gray) in TRANSFORM_PROBES.items():
        save_jpeg(view(photo_name, box, size=size, gray=gray), probe_dir / "transform" / file)
    Image.new("RGB", (320, 240), SOLID_COLOUR).save(probe_dir / "transform" / "solid.png")
    for split, items in (("train", REAL_TRAIN), ("val", REAL_VAL)):
        for i, (photo_name, label) in enumerate(items):
            save_jpeg(view(photo_name, (0.05, 0.05, 0.95, 0.95), size=(320, 320)),
                      probe_dir / "real" / split / f"{i:02d}_{label}.jpg")
    _tiny(probe_dir)
    _real_heads(probe_dir)
    _tiny_norm(probe_dir)
    _scores(probe_dir)


def _tiny(probe_dir: Path) -> None:
    rng = np.random.default_rng(0)
    data = {
        "trunk_w": rng.uniform(-0.6, 0.6, (6, 4)),
        "trunk_b": rng.uniform(-0.2, 0.2, 6),
        "fc_w": rng.uniform(-0.4, 0.4, (3, 6)),
        "fc_b": np.zeros(3),
        "aux_w": rng.uniform(-0.4, 0.4, (3, 6)),
        "aux_b": np.zeros(3),
        "train_x": rng.normal(0, 1, (6, 4)),
    }
    data = {k: v.astype(np.float32) for k, v in data.items()}
    data["train_y"] = np.array([0, 1, 2, 2, 1, 0], np.int64)
    data["val_x"] = np.array(TINY_VAL_X, np.float32)
    data["val_y"] = np.array(TINY_VAL_Y, np.int64)
    np.savez(probe_dir / "tiny.npz", **data)


def _real_heads(probe_dir: Path) -> None:
    rng = np.random.default_rng(1)
    heads = {"fc_w": rng.uniform(-1, 1, (2, 2048)) / np.sqrt(2048), "fc_b": np.zeros(2),
             "aux_w": rng.uniform(-1, 1, (2, 768)) / np.sqrt(768), "aux_b": np.zeros(2)}
    np.savez(probe_dir / "real_heads.npz", **{k: v.astype(np.float32) for k, v in heads.items()})


def _tiny_norm(probe_dir: Path) -> None:
    rng = np.random.default_rng(2)
    data = {
        "trunk_w": rng.uniform(-0.8, 0.8, (5, 4)), "trunk_b": rng.uniform(-0.3, 0.3, 5),
        "fc_w": rng.uniform(-0.6, 0.6, (3, 5)), "fc_b": rng.uniform(-0.1, 0.1, 3),
        "aux_w": rng.uniform(-0.6, 0.6, (3, 5)), "aux_b": rng.uniform(-0.1, 0.1, 3),
        "norm_w": rng.uniform(0.5, 1.5, 5), "norm_b": rng.uniform(-0.2, 0.2, 5),
        "norm_mean": rng.uniform(-0.5, 0.5, 5), "norm_var": rng.uniform(0.5, 2.0, 5),
        "probe_x": rng.normal(0, 1, (5, 4)),
    }
    np.savez(probe_dir / "tiny_norm.npz", **{k: v.astype(np.float32) for k, v in data.items()})


def _scores(probe_dir: Path) -> None:
    rng = np.random.default_rng(3)
    a_x = rng.normal(0, 1, (11, 4))
    a_y = rng.integers(0, 4, 11)
    b_x = rng.normal(0, 1, (7, 5))
    b_x[:, 2] = -5.0                     # class 2 is never predicted
    b_y = rng.integers(0, 4, 7)          # class 4 never occurs
    np.savez(probe_dir / "scores.npz", a_x=a_x.astype(np.float32), a_y=a_y.astype(np.int64),
             b_x=b_x.astype(np.float32), b_y=b_y.astype(np.int64))
