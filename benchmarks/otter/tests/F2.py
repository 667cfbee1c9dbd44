"""F2 trainset and testset: one gallery / one probe image per class, ImageFolder classes."""
import numpy as np
from otter.test_files import test_case

OK_FORMAT = False
name = "F2"
points = 2


@test_case(points=2)
def test_datasets(trainset, testset):
    classes = [str(c) for c in np.load("expected.npz")["classes"]]
    for split, dataset, kind in (("trainset", trainset, "gallery.jpg"), ("testset", testset, "probe.jpg")):
        assert len(dataset) == len(classes), f"`{split}`: {len(dataset)} images, expected {len(classes)}"
        assert list(dataset.classes) == classes, f"`{split}.classes`: {dataset.classes}, expected {classes}"
        files = sorted(path.split("/")[-2:] for path, _label in dataset.samples)
        assert files == sorted([c, kind] for c in classes), f"`{split}` holds {files}"
        assert sorted(label for _path, label in dataset.samples) == list(range(len(classes)))
