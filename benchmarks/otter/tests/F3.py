"""F3 network: ImageNet ResNet-18 returning the 512-d pooled feature (on a grader batch)."""
import numpy as np
import torch
from otter.test_files import test_case

OK_FORMAT = False
name = "F3"
points = 2


@test_case(points=2)
def test_network(network):
    expected = np.load("expected.npz")["network:output"]
    batch = torch.from_numpy(np.load("probes/network_input.npy"))
    network.eval()
    with torch.no_grad():
        got = network(batch).numpy()
    assert got.size == expected.size, f"network(batch): shape {got.shape}, expected {expected.shape}"
    assert np.allclose(got.reshape(expected.shape), expected, atol=0, rtol=1e-3), "network(batch): wrong features"
