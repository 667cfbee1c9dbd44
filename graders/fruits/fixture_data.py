"""The fruits fixture dataset and the grader's hidden probe inputs, cut from shipped photographs.

Real layout: data/fruits/<class>/gallery.jpg (train) and <class>/probe.jpg (test). Each class is
one photograph: the gallery image is one view of it, the probe another (a different, mirrored
crop), as in the course's Fruits and Vegetables set where both show the same kind of produce.
The class names are those of the photographs; they stand in for fruit classes.
"""
from __future__ import annotations

from pathlib import Path

from autograder.fixtures import save_jpeg, view

CLASSES = ["astronaut", "cat", "china", "coffee", "flower", "hopper", "hubble", "motorcycle",
           "retina", "rocket"]
GALLERY_BOX = (0.0, 0.0, 0.8, 0.85)
PROBE_BOX = (0.15, 0.1, 1.0, 1.0)


def build(data_dir: Path) -> None:
    for name in CLASSES:
        save_jpeg(view(name, GALLERY_BOX, size=(320, 280)), data_dir / name / "gallery.jpg")
        save_jpeg(view(name, PROBE_BOX, size=(300, 300), mirror=True), data_dir / name / "probe.jpg")


# Inputs the student never sees: other photographs, other sizes, another class count.
TRANSFORM_PROBES = {  # file -> (photo, box, size, gray)
    "small.jpg": ("cells", (0.2, 0.2, 0.6, 0.5), (150, 120), False),       # upscaled
    "portrait.jpg": ("coins", (0.1, 0.0, 0.5, 1.0), (210, 380), True),     # gray, tall
    "wide.jpg": ("colorwheel", (0.0, 0.2, 1.0, 0.8), (500, 230), False),   # wide
    "large.jpg": ("clock", (0.0, 0.0, 1.0, 1.0), (640, 480), False),
}
EXTRACT_CLASSES = {"bricks": "brick", "clock": "clock", "gravel": "gravel", "wheel": "colorwheel",
                   "zcoins": "coins"}


def build_probes(probe_dir: Path) -> None:
    for file, (photo, box, size, gray) in TRANSFORM_PROBES.items():
        save_jpeg(view(photo, box, size=size, gray=gray), probe_dir / "transform" / file)
    for label, photo in EXTRACT_CLASSES.items():
        save_jpeg(view(photo, (0.05, 0.05, 0.95, 0.9), size=(260, 240)),
                  probe_dir / "extract_set" / label / "image.jpg")
