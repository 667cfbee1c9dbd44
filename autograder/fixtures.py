"""Real photographs that installed packages ship, for fixture datasets and grader-made probes.

Nothing is downloaded: scikit-image's bundled images, scikit-learn's sample images and
matplotlib's sample photograph. Each assignment's graders cut their datasets from these.
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from PIL import Image

# name -> (loader kind, key). Only images that load offline (MACHINE-FACTS.md).
_SKIMAGE = {
    "astronaut": "astronaut", "cat": "chelsea", "coffee": "coffee", "rocket": "rocket",
    "motorcycle": "stereo_motorcycle", "hubble": "hubble_deep_field",
    "cells": "immunohistochemistry", "retina": "retina", "colorwheel": "colorwheel",
    "coins": "coins", "camera": "camera", "brick": "brick", "grass": "grass",
    "gravel": "gravel", "clock": "clock", "moon": "moon", "page": "page", "text": "text",
}
_SKLEARN = {"china": "china.jpg", "flower": "flower.jpg"}


@functools.lru_cache(maxsize=None)
def photo(name: str) -> Image.Image:
    """One shipped photograph as an RGB PIL image (grayscale ones are converted)."""
    if name in _SKIMAGE:
        import skimage.data
        array = getattr(skimage.data, _SKIMAGE[name])()
        if isinstance(array, tuple):  # stereo pairs
            array = array[0]
    elif name in _SKLEARN:
        from sklearn.datasets import load_sample_image
        array = load_sample_image(_SKLEARN[name])
    elif name == "hopper":
        import matplotlib
        path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
        return Image.open(path).convert("RGB")
    else:
        raise KeyError(f"no shipped photograph called {name!r}")
    array = np.asarray(array)
    if array.dtype != np.uint8:
        array = (array * 255).astype(np.uint8)
    return Image.fromarray(array).convert("RGB")


def view(name: str, box: tuple[float, float, float, float], size: tuple[int, int] | None = None,
         mirror: bool = False, gray: bool = False) -> Image.Image:
    """A crop of a photograph, `box` given as fractions (left, top, right, bottom)."""
    image = photo(name)
    w, h = image.size
    left, top, right, bottom = box
    image = image.crop((round(left * w), round(top * h), round(right * w), round(bottom * h)))
    if size is not None:
        image = image.resize(size, Image.BICUBIC)
    if mirror:
        image = image.transpose(Image.FLIP_LEFT_RIGHT)
    if gray:
        image = image.convert("L")
    return image


def save_jpeg(image: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="JPEG", quality=90)
