"""F7 accuracy: fraction of test classes whose most similar train class is their own."""
import numpy as np
from otter.test_files import test_case

OK_FORMAT = False
name = "F7"
points = 1


@test_case(points=1)
def test_accuracy(accuracy, similarities):
    matrix = np.asarray(similarities, dtype=np.float64)
    expected = float(np.mean(matrix.argmax(axis=1) == np.arange(len(matrix))))
    assert abs(float(accuracy) - expected) <= 1e-6, \
        f"`accuracy`: {accuracy}, expected {expected} (from your similarities)"
