"""The saliency fixture dataset and the grader's hidden probe inputs, cut from shipped photographs.

Real layout: data/saliency/My-Images/*.jpg, the student's own photographs (a few, any size).
Here: three photographs of different sizes and aspect ratios (wide, square, tall), as scaled-down
phone photos would be.

Probes (never seen by the student): other photographs for M1, at 224 x 224 for VGG16 and at
224 x 224 and 160 x 192 (H x W) for the grader's tiny CNN. expected.build_probe_inputs turns them
into network inputs (.npy), makes the tiny CNN's weights and writes the list of M1 cases.
"""
from __future__ import annotations

from pathlib import Path

from autograder.fixtures import save_jpeg, view

MY_IMAGES = {  # file -> (photo, box, size W x H)
    "astronaut.jpg": ("astronaut", (0.15, 0.0, 0.85, 1.0), (300, 400)),   # tall
    "cat.jpg": ("cat", (0.0, 0.0, 1.0, 1.0), (451, 300)),                  # wide
    "coffee.jpg": ("coffee", (0.1, 0.0, 0.9, 1.0), (320, 320)),            # square
}


def build(data_dir: Path) -> None:
    for file, (photo, box, size) in MY_IMAGES.items():
        save_jpeg(view(photo, box, size=size), data_dir / "My-Images" / file)


# M1 hidden images: file -> (photo, box, size W x H). Sizes are the network input sizes.
M1_IMAGES = {
    "clock.jpg": ("clock", (0.0, 0.0, 1.0, 1.0), (224, 224)),         # grey photograph, as RGB
    "flower.jpg": ("flower", (0.1, 0.0, 0.8, 1.0), (224, 224)),
    "coins.jpg": ("coins", (0.0, 0.0, 1.0, 1.0), (224, 224)),
    "wheel.jpg": ("colorwheel", (0.0, 0.1, 1.0, 0.9), (192, 160)),     # H 160 x W 192
    "hubble.jpg": ("hubble", (0.2, 0.2, 0.8, 0.7), (192, 160)),
}


def build_probes(probe_dir: Path) -> None:
    for file, (photo, box, size) in M1_IMAGES.items():
        save_jpeg(view(photo, box, size=size), probe_dir / "m1" / file)
