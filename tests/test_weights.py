"""The weight store: deterministic stand-ins under torchvision's offline names, and real checkpoints."""
from __future__ import annotations

import json
import pickle
import stat
from pathlib import Path

import pytest
import torch
from torchvision import models

from autograder.weights import CHECKPOINTS, STANDIN_SEED, WeightStore

RESNET = CHECKPOINTS["resnet18"].file_name


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> WeightStore:
    """A fresh store holding the resnet18 stand-in (about a second to write)."""
    store = WeightStore(tmp_path_factory.mktemp("store"))
    assert store.ensure(["resnet18"]) == ["resnet18"]
    return store


def test_checkpoint_file_name_is_the_one_torchvision_looks_up():
    assert RESNET == Path(models.ResNet18_Weights.IMAGENET1K_V1.url).name == "resnet18-f37072fd.pth"


def test_standin_is_deterministic(store, tmp_path):
    again = WeightStore(tmp_path / "again")
    assert again.ensure(["resnet18"]) == ["resnet18"]
    first = torch.load(store.checkpoints / RESNET, weights_only=True)
    second = torch.load(again.checkpoints / RESNET, weights_only=True)
    assert list(first) == list(second)
    for key in first:
        assert torch.equal(first[key], second[key]), key
    # Not all zeros or ones: really the architecture's random initialisation.
    assert first["conv1.weight"].std() > 0


def test_ensure_writes_nothing_when_the_checkpoint_is_there(store):
    before = (store.checkpoints / RESNET).stat().st_mtime_ns
    assert store.ensure(["resnet18"]) == []
    assert (store.checkpoints / RESNET).stat().st_mtime_ns == before


def test_manifest_says_stand_in_with_its_seed_and_hash(store):
    entry = json.loads(store.manifest_path.read_text())[RESNET]
    assert entry["kind"] == "stand-in" and entry["seed"] == STANDIN_SEED and len(entry["sha256"]) == 64
    assert store.kind("resnet18") == "stand-in"
    assert store.kind("vgg16") == "missing"
    rows = store.describe(["resnet18", "alexnet"])
    assert [(r["model"], r["kind"], r["file"]) for r in rows] == [
        ("resnet18", "stand-in", RESNET), ("alexnet", "missing", CHECKPOINTS["alexnet"].file_name)]


def test_store_is_readable_by_all_and_writable_by_its_owner_only(store):
    for folder in (store.root, store.root / "hub", store.checkpoints):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o755, folder
    for file in (store.checkpoints / RESNET, store.manifest_path):
        assert stat.S_IMODE(file.stat().st_mode) == 0o644, file


def test_torchvision_loads_the_standin_offline(store, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(store.root))

    def no_download(*args, **kwargs):
        raise AssertionError(f"torchvision tried to download {args[:1]}")
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    network = models.resnet18(weights=models.ResNet18_Weights.IMAGENET1K_V1)
    saved = torch.load(store.checkpoints / RESNET, weights_only=True)
    loaded = network.state_dict()
    assert set(loaded) == set(saved)
    for key in saved:
        assert torch.equal(loaded[key], saved[key]), key


def test_the_harvests_pretrained_builds_what_torchvision_builds_from_the_store(store, monkeypatch):
    """graders/harvest_common.py's `pretrained` (no random init before the checkpoint) against
    torchvision's own `weights=`: the same tensors, parameters that train, the same outputs."""
    from autograder.assignments import HARVEST_COMMON
    monkeypatch.setenv("TORCH_HOME", str(store.root))
    kernel_side = {}
    exec(compile(HARVEST_COMMON.read_text(), str(HARVEST_COMMON), "exec"), kernel_side)
    weights = models.ResNet18_Weights.IMAGENET1K_V1
    built, torchvisions = kernel_side["pretrained"](models.resnet18, weights), models.resnet18(weights=weights)
    ours, theirs = dict(built.named_parameters()), dict(torchvisions.named_parameters())
    assert list(ours) == list(theirs)
    for key in theirs:
        assert type(ours[key]) is torch.nn.Parameter and ours[key].requires_grad, key
        assert torch.equal(ours[key], theirs[key]), key
    for (name, mine), (_, torchvision_buffer) in zip(built.named_buffers(), torchvisions.named_buffers(), strict=True):
        assert torch.equal(mine, torchvision_buffer), name
    assert built.training and torchvisions.training
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(built.eval()(images), torchvisions.eval()(images))


def test_add_real_refuses_an_unknown_file_name(tmp_path):
    store = WeightStore(tmp_path / "store")
    stray = tmp_path / "resnet18-00000000.pth"
    torch.save({"w": torch.zeros(1)}, stray)
    with pytest.raises(ValueError, match="resnet18-00000000.pth is not a checkpoint the course uses"):
        store.add_real(stray)
    assert not store.checkpoints.exists() and store.manifest() == {}


def test_add_real_refuses_the_right_name_with_the_wrong_parameters(tmp_path):
    store = WeightStore(tmp_path / "store")
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    wrong = incoming / RESNET
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.weight": torch.zeros(10, 512)}, wrong)
    with pytest.raises(ValueError, match=f"{RESNET} does not hold the resnet18 parameters"):
        store.add_real(wrong)
    assert store.kind("resnet18") == "missing" and not (store.checkpoints / RESNET).exists()


def test_add_real_never_unpickles_code(tmp_path, payload):
    store = WeightStore(tmp_path / "store")
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    marker = tmp_path / "unpickled-marker"
    torch.save({"conv1.weight": payload(str(marker))}, incoming / RESNET)
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        store.add_real(incoming / RESNET)
    assert not marker.exists()
    assert store.kind("resnet18") == "missing"


def test_add_real_takes_a_matching_checkpoint_and_the_manifest_says_real(store, tmp_path):
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    state = {k: v.clone() for k, v in torch.load(store.checkpoints / RESNET, weights_only=True).items()}
    state["fc.bias"] += 1.0  # not the stand-in's bytes
    torch.save(state, incoming / RESNET)
    real_store = WeightStore(tmp_path / "store")
    real_store.ensure(["resnet18"])
    assert real_store.kind("resnet18") == "stand-in"
    assert real_store.add_real(incoming / RESNET) == "resnet18"
    assert real_store.kind("resnet18") == "real"
    entry = real_store.manifest()[RESNET]
    assert entry["kind"] == "real" and entry["source"] == str(incoming / RESNET) and "seed" not in entry
    assert (real_store.checkpoints / RESNET).read_bytes() == (incoming / RESNET).read_bytes()
    assert real_store.describe(["resnet18"])[0]["kind"] == "real"
    assert real_store.ensure(["resnet18"]) == []  # a real checkpoint is never replaced by a stand-in
    assert real_store.fingerprint(["resnet18"]) != store.fingerprint(["resnet18"])


def test_checkpoint_file_names_are_those_torchvision_looks_up():
    from autograder.weights import CHECKPOINTS
    for checkpoint in CHECKPOINTS.values():
        assert checkpoint.file_name == checkpoint.url_file_name()
