"""F5 similarities: test x train cosine similarities (rows = true class)."""
import numpy as np
from otter.test_files import test_case

OK_FORMAT = False
name = "F5"
points = 2


@test_case(points=2)
def test_similarities(similarities):
    expected = np.load("expected.npz")["similarities"]
    got = np.asarray(similarities, dtype=np.float64)
    assert got.shape == expected.shape, f"`similarities`: shape {got.shape}, expected {expected.shape}"
    assert np.allclose(got, expected, atol=1e-4, rtol=0), "`similarities`: wrong values"
