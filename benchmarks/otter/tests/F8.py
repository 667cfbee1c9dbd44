"""F8 misclassified and most_dissimilar, from the student's own similarities."""
import numpy as np
from otter.test_files import test_case

OK_FORMAT = False
name = "F8"
points = 2


@test_case(points=1)
def test_misclassified(misclassified, similarities):
    classes = [str(c) for c in np.load("expected.npz")["classes"]]
    predicted = np.asarray(similarities).argmax(axis=1)
    expected = sorted((classes[t], classes[p]) for t, p in enumerate(predicted) if t != p)
    assert sorted(tuple(pair) for pair in misclassified) == expected, f"`misclassified`: expected {expected}"


@test_case(points=1)
def test_most_dissimilar(most_dissimilar, similarities):
    classes = [str(c) for c in np.load("expected.npz")["classes"]]
    matrix = np.asarray(similarities)
    row, column = divmod(int(np.argmin(matrix)), matrix.shape[1])
    assert tuple(most_dissimilar) in {(classes[row], classes[column]), (classes[column], classes[row])}
