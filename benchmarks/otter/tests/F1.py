"""F1 transform: resize 256, centre crop 224, [0, 1], ImageNet normalisation, on unseen images."""
import numpy as np
from otter.test_files import test_case
from PIL import Image

OK_FORMAT = False
name = "F1"
points = 2


@test_case(points=2)
def test_transform(transform):
    expected = np.load("expected.npz")
    for file in ("large.jpg", "portrait.jpg", "small.jpg", "wide.jpg"):
        got = transform(Image.open(f"probes/transform/{file}").convert("RGB")).numpy()
        assert got.shape == (3, 224, 224), f"transform(image {file}): shape {got.shape}, expected (3, 224, 224)"
        assert got.dtype == np.float32, f"transform(image {file}): dtype {got.dtype}, expected float32"
        difference = np.abs(got - expected[f"transform:{file}"])
        assert difference.max() <= 0.15 and difference.mean() <= 0.01, \
            f"transform(image {file}): off by up to {difference.max():.3f} (mean {difference.mean():.4f})"
