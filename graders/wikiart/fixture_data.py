"""The wikiart fixture dataset and the grader's hidden probe inputs, cut from shipped photographs.

Real layout: data/wikiart/{train,val}/<style>/*.jpg (the course's WikiArt subset has 10 styles and
thousands of paintings). The fixture keeps 3 styles, 4 training and 2 validation images each,
small JPEGs: every style is a different set of photographs, each image another crop of one of them.
The folder names are real WikiArt style names; the pictures only stand in for paintings.

Probes (never seen by the student):
- alexnet/*.jpg: two photographs for the AlexNet forward check of W1 (expected.py preprocesses them).
- criterion_{logits,labels}.npy: scores and labels for the W2 loss check.
- evaluate_{a,b}_{inputs,labels}.npy: W3 loaders whose inputs are the logits the grader's recording
  model returns, so the accuracy is known by design (a: 7/10, b: 3/7, neither a mean of batch
  accuracies, see EVALUATE_DESIGN).
- train_/val_{images,labels}.npy: 8x8 crops of photographs for W4's tiny AlexNet-shaped model; pixel
  (0, 0, 0) is a marker (+5 train, -5 val) the model records to tell training inputs from validation ones.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from autograder.fixtures import save_jpeg, view

# style -> (photograph, box) per image: 4 train, then 2 val
STYLES = {
    "Baroque": ["astronaut", "coffee", "hopper", "china"],
    "Cubism": ["brick", "colorwheel", "coins", "page"],
    "Impressionism": ["flower", "grass", "retina", "hubble"],
}
TRAIN_BOXES = [(0.0, 0.0, 0.7, 0.7), (0.3, 0.0, 1.0, 0.7), (0.0, 0.3, 0.7, 1.0), (0.3, 0.3, 1.0, 1.0)]
VAL_BOXES = [(0.1, 0.1, 0.9, 0.9), (0.2, 0.0, 0.8, 0.6)]
IMAGE_SIZES = [(96, 80), (80, 96), (112, 84), (90, 90)]


def build(data_dir: Path) -> None:
    for style, photos in STYLES.items():
        for i, box in enumerate(TRAIN_BOXES):
            photo = photos[i % len(photos)]
            save_jpeg(view(photo, box, size=IMAGE_SIZES[i]), data_dir / "train" / style / f"{style.lower()}_{i:03d}.jpg")
        for i, box in enumerate(VAL_BOXES):
            photo = photos[(i + 1) % len(photos)]
            save_jpeg(view(photo, box, size=IMAGE_SIZES[(i + 2) % 4], mirror=True),
                      data_dir / "val" / style / f"{style.lower()}_{100 + i:03d}.jpg")


ALEXNET_PROBES = {"clock.jpg": ("clock", (0.0, 0.0, 1.0, 1.0), (300, 240)),
                  "motorcycle.jpg": ("motorcycle", (0.1, 0.1, 0.9, 0.9), (260, 320))}

# W3: (number of classes, batch size, correct predictions per batch, batch sizes)
EVALUATE_DESIGN = {
    "a": {"classes": 3, "batch_size": 4, "correct": [4, 3, 0], "sizes": [4, 4, 2]},   # 7/10 (batch mean 0.583)
    "b": {"classes": 4, "batch_size": 3, "correct": [1, 2, 0], "sizes": [3, 3, 1]},   # 3/7 (batch mean 0.333)
}

# W4: three classes of 8x8 crops; 12 training images (batches of 4), 9 validation ones (batches of 3)
TRAIN_PHOTOS = {0: "brick", 1: "grass", 2: "coins"}
MARKER = 5.0


def build_probes(probe_dir: Path) -> None:
    for file, (photo, box, size) in ALEXNET_PROBES.items():
        save_jpeg(view(photo, box, size=size), probe_dir / "alexnet" / file)

    rng = np.random.default_rng(587)
    np.save(probe_dir / "criterion_logits.npy", rng.normal(0, 2, (6, 5)).astype(np.float32))
    np.save(probe_dir / "criterion_labels.npy", np.array([0, 4, 2, 2, 1, 3], dtype=np.int64))

    for key, design in EVALUATE_DESIGN.items():
        inputs, labels = [], []
        for correct, size in zip(design["correct"], design["sizes"]):
            for i in range(size):
                logits = rng.normal(0, 1, design["classes"]).astype(np.float32)
                top = int(np.argmax(logits))
                inputs.append(logits)
                labels.append(top if i < correct else (top + 1) % design["classes"])
        np.save(probe_dir / f"evaluate_{key}_inputs.npy", np.stack(inputs))
        np.save(probe_dir / f"evaluate_{key}_labels.npy", np.array(labels, dtype=np.int64))

    for split, per_class, marker in (("train", 4, MARKER), ("val", 3, -MARKER)):
        images, labels = [], []
        for label, photo in TRAIN_PHOTOS.items():
            for i in range(per_class):
                left = 0.1 * i + (0.05 if split == "val" else 0.0)
                crop = np.asarray(view(photo, (left, left, left + 0.5, left + 0.5), size=(8, 8)), dtype=np.float32)
                images.append(crop.transpose(2, 0, 1) / 255.0)
                labels.append(label)
        images = np.stack(images).astype(np.float32)
        images[:, 0, 0, 0] = marker
        np.save(probe_dir / f"{split}_images.npy", images)
        np.save(probe_dir / f"{split}_labels.npy", np.array(labels, dtype=np.int64))
