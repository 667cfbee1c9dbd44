"""The scene15 fixture dataset and the grader's hidden probe inputs, cut from shipped photographs.

Real layout: data/scene15/{train,test}/<class>/*.jpg, GRAYSCALE JPEGs (mode "L"), as in the
15 Scene set. Four classes stand in for the fifteen; each is two photographs: the training images
are two crops of the first, the test images one other crop of the first (mirrored) and one crop
of the second photograph, so a classifier trained on the crops does not score 100% on the test split
and the SVM's C matters (with the stand-in VGG16: accuracy 0.375 to 0.75 over C = 0.001 ... 100,
best at C = 1). 16 images in all: VGG16 is slow on a CPU (~0.3-0.5 s per image on one thread).
Sizes vary around the real set's (~250 x 300) so the resize is exercised.
"""
from __future__ import annotations

from pathlib import Path

from autograder.fixtures import save_jpeg, view

# class -> (main photograph, second photograph); class names are 15 Scene classes, for flavour.
CLASSES = {
    "coast": ("china", "flower"),
    "forest": ("grass", "gravel"),
    "industrial": ("rocket", "motorcycle"),
    "kitchen": ("coffee", "clock"),
}
TRAIN_VIEWS = [  # (box, size, mirror)
    ((0.0, 0.0, 0.7, 0.8), (300, 250), False),
    ((0.3, 0.2, 1.0, 1.0), (256, 256), False),
]
TEST_VIEW_MAIN = ((0.15, 0.05, 0.85, 0.95), (250, 300), True)
TEST_VIEW_OTHER = ((0.05, 0.05, 0.95, 0.95), (300, 240), False)


def build(data_dir: Path) -> None:
    for name, (main, other) in CLASSES.items():
        for i, (box, size, mirror) in enumerate(TRAIN_VIEWS):
            save_jpeg(view(main, box, size=size, mirror=mirror, gray=True),
                      data_dir / "train" / name / f"{name}_{i + 1:03d}.jpg")
        box, size, mirror = TEST_VIEW_MAIN
        save_jpeg(view(main, box, size=size, mirror=mirror, gray=True), data_dir / "test" / name / f"{name}_101.jpg")
        box, size, mirror = TEST_VIEW_OTHER
        save_jpeg(view(other, box, size=size, mirror=mirror, gray=True), data_dir / "test" / name / f"{name}_102.jpg")


# Inputs the student never sees: other photographs, other sizes, RGB and grayscale.
PREDICT_PROBES = {  # S1: file -> (photo, box, size, gray)
    "color.jpg": ("hopper", (0.0, 0.1, 1.0, 0.9), (260, 310), False),        # RGB, upscaled width
    "gray.jpg": ("camera", (0.1, 0.0, 0.9, 0.8), (330, 240), True),          # grayscale, wide
}
RELU7_PROBES = {  # S3: a grader-made batch (preprocessed by expected.build_probe_inputs)
    "astronaut.jpg": ("astronaut", (0.2, 0.0, 0.9, 0.7), (240, 240), True),
    "cat.jpg": ("cat", (0.0, 0.0, 1.0, 1.0), (300, 200), False),
}
EXTRACT_SET = {  # S4: another grayscale dataset (3 classes, other photographs, uneven counts)
    "bricks": [("brick", (0.0, 0.0, 0.8, 0.8), (260, 260))],
    "moon": [("moon", (0.1, 0.1, 0.9, 0.9), (300, 250)), ("moon", (0.0, 0.3, 0.7, 1.0), (230, 280))],
    "text": [("text", (0.0, 0.0, 0.6, 1.0), (320, 200))],
}


def build_probes(probe_dir: Path) -> None:
    for group, probes in (("predict", PREDICT_PROBES), ("relu7", RELU7_PROBES)):
        for file, (photo, box, size, gray) in probes.items():
            image = view(photo, box, size=size, gray=gray)
            save_jpeg(image, probe_dir / group / file)
    for label, views in EXTRACT_SET.items():
        for i, (photo, box, size) in enumerate(views):
            save_jpeg(view(photo, box, size=size, gray=True), probe_dir / "extract_set" / label / f"{label}_{i}.jpg")
