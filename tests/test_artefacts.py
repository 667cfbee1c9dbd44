"""The safe-format wall: Exporter (runs in the sandbox) -> files -> Artefacts (grader), and copy_out."""
from __future__ import annotations

import json
import math
import os
import pickle
import zipfile

import numpy as np
import pytest
import torch

from autograder.artefacts import ON_REQUEST, Artefacts, ForeignObject, NotCollected, copy_out
from autograder.artefacts import decode
from autograder.artefacts.encode import Exporter, require


def export(folder, **values) -> Artefacts:
    """Export `values` the way the harvest does, and read them back the way the graders do."""
    exporter = Exporter(str(folder))
    for name, value in values.items():
        exporter.value(name, lambda value=value: value)
    exporter.write()
    return Artefacts(folder)


def write_manifest(folder, entries: dict) -> None:
    (folder / "manifest.json").write_text(json.dumps({"format": 1, "entries": entries}))


def ok(value) -> dict:
    return {"status": "ok", "value": value}


# -- round trips -----------------------------------------------------------------------------------
def test_tensor_round_trip_keeps_values_dtype_and_shape(tmp_path):
    tensor = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    artefacts = export(tmp_path, t=tensor, i=torch.tensor([1, 2], dtype=torch.int64),
                       view=tensor.t(), grad=torch.ones(2, requires_grad=True) * 2,
                       half=torch.tensor([1.5], dtype=torch.bfloat16))
    got = artefacts.get("t")
    assert isinstance(got, np.ndarray) and got.dtype == np.float32 and got.shape == (3, 4)
    np.testing.assert_array_equal(got, tensor.numpy())
    assert artefacts.get("i").dtype == np.int64
    np.testing.assert_array_equal(artefacts.get("view"), tensor.numpy().T)  # non-contiguous view
    np.testing.assert_array_equal(artefacts.get("grad"), [2.0, 2.0])
    half = artefacts.get("half")
    assert half.dtype == np.float32 and half.tolist() == [1.5]  # bfloat16 widened, not lost
    assert artefacts.entries["t"]["value"]["tensor"] is True


def test_numpy_round_trip(tmp_path):
    arrays = {"f64": np.linspace(0, 1, 5), "u8": np.arange(6, dtype=np.uint8).reshape(2, 3),
              "b": np.array([True, False]), "c": np.array([1 + 2j]), "one": np.array([7]),
              "empty": np.zeros((0, 3), dtype=np.float32)}
    artefacts = export(tmp_path, **arrays)
    for name, expected in arrays.items():
        got = artefacts.get(name)
        assert got.dtype == expected.dtype and got.shape == expected.shape, name
        np.testing.assert_array_equal(got, expected)
    assert artefacts.entries["f64"]["value"]["tensor"] is False


@pytest.mark.parametrize("value", [torch.tensor(0.75), torch.tensor(3), np.array(0.75)],
                         ids=["tensor-float", "tensor-int", "array"])
def test_zero_dimensional_values_round_trip(tmp_path, value):
    got = export(tmp_path, v=value).get("v")
    assert isinstance(got, np.ndarray) and got.shape == ()
    assert float(got) == float(value)


def test_nested_containers_round_trip_with_their_types(tmp_path):
    value = {"a": [1, (2.5, "s", None)], 3: {"b": True, (1, 2): [[]]}, "t": ()}
    got = export(tmp_path, v=value).get("v")
    assert got == value
    assert isinstance(got["a"][1], tuple) and isinstance(got["a"], list)
    assert isinstance(got[3]["b"], bool)


def test_int_keys_stay_ints(tmp_path):
    features = {0: torch.ones(1, 4), 1: torch.zeros(1, 4), 10: torch.full((1, 4), 2.0)}
    got = export(tmp_path, features=features).get("features")
    assert sorted(got) == [0, 1, 10] and all(type(k) is int for k in got)
    np.testing.assert_array_equal(got[10], np.full((1, 4), 2.0, dtype=np.float32))


def test_nan_and_inf_round_trip_and_the_manifest_is_strict_json(tmp_path):
    artefacts = export(tmp_path, nan=float("nan"), inf=float("inf"), ninf=-math.inf,
                       f32nan=np.float32("nan"), mixed=[1.0, float("inf")], plain=0.25)
    assert math.isnan(artefacts.get("nan")) and math.isnan(artefacts.get("f32nan"))
    assert artefacts.get("inf") == math.inf and artefacts.get("ninf") == -math.inf
    assert artefacts.get("mixed") == [1.0, math.inf]
    assert artefacts.get("plain") == 0.25

    def no_constants(name):
        raise AssertionError(f"manifest holds the non-JSON constant {name}")
    json.loads((tmp_path / "manifest.json").read_text(), parse_constant=no_constants)


def test_big_and_numpy_ints_round_trip_exactly(tmp_path):
    artefacts = export(tmp_path, big=2**80 + 1, negative=-(2**70) - 3, edge=2**53 + 1,
                       np_int=np.int64(-5), np_uint=np.uint64(2**63 + 7), flag=np.bool_(True))
    assert artefacts.get("big") == 2**80 + 1
    assert artefacts.get("negative") == -(2**70) - 3
    assert artefacts.get("edge") == 2**53 + 1
    assert artefacts.get("np_int") == -5 and type(artefacts.get("np_int")) is int
    assert artefacts.get("np_uint") == 2**63 + 7
    assert artefacts.get("flag") is True


def test_object_dtype_arrays_are_refused_and_not_written(tmp_path):
    artefacts = export(tmp_path, objects=np.array([{"a": 1}, None], dtype=object),
                       strings=np.array(["a", "b"]))
    for name, dtype in (("objects", "object"), ("strings", "<U1")):
        assert artefacts.status(name) == "error"
        with pytest.raises(NotCollected, match=f"could not export: .*dtype {dtype} cannot be exported"):
            artefacts.get(name)
    assert not list(tmp_path.glob("*.npy"))


class LyingTensor(torch.Tensor):
    """Claims to equal everything and hands out fake data through every conversion it controls."""

    def __eq__(self, other):
        return True

    __hash__ = torch.Tensor.__hash__

    def numpy(self, *args, **kwargs):
        return np.zeros(self.shape, dtype=np.float32)

    def __array__(self, *args, **kwargs):
        return np.zeros(self.shape, dtype=np.float32)

    def tolist(self):
        return [0.0] * self.numel()

    def cpu(self, *args, **kwargs):
        return torch.zeros(self.shape)


class LyingArray(np.ndarray):
    def __eq__(self, other):
        return np.ones(self.shape, dtype=bool)

    def tolist(self):
        return [0] * self.size


def test_lying_tensor_and_array_subclasses_export_their_real_data(tmp_path):
    real = torch.tensor([1.0, 2.0, 3.0])
    liar = real.clone().as_subclass(LyingTensor)
    assert (liar == torch.zeros(3)) is True and not liar.numpy().any()  # it does lie
    fake_array = np.array([4, 5, 6]).view(LyingArray)
    artefacts = export(tmp_path, liar=liar, fake_array=fake_array)
    got = artefacts.get("liar")
    assert type(got) is np.ndarray and got.tolist() == [1.0, 2.0, 3.0]
    assert artefacts.entries["liar"]["value"]["tensor"] is True
    got = artefacts.get("fake_array")
    assert type(got) is np.ndarray and got.tolist() == [4, 5, 6]


def test_other_objects_travel_as_type_name_and_repr_only(tmp_path):
    class Model:
        def __repr__(self):
            return "Model(layers=3)"
    got = export(tmp_path, m=Model()).get("m")
    assert isinstance(got, ForeignObject)
    assert got.type_name.endswith("Model") and got.text == "Model(layers=3)"


def test_missing_and_failing_values_are_recorded_with_a_reason(tmp_path):
    exporter = Exporter(str(tmp_path))
    namespace = {"present": 1}
    exporter.value("absent", lambda: require(namespace, "absent"))
    exporter.value("broken", lambda: 1 / 0)
    exporter.value("present", lambda: require(namespace, "present"))
    exporter.write()
    artefacts = Artefacts(tmp_path)
    assert artefacts.status("absent") == "missing" and artefacts.status("broken") == "error"
    with pytest.raises(NotCollected, match="`absent` is not defined at the top level"):
        artefacts.get("absent")
    with pytest.raises(NotCollected, match="ZeroDivisionError: division by zero .*line"):
        artefacts.get("broken")
    assert artefacts.get("present") == 1
    with pytest.raises(NotCollected, match="`never` could not be collected"):
        artefacts.get("never")


# -- what the decoder refuses ------------------------------------------------------------------------
def test_pickled_npy_is_not_unpickled(tmp_path, payload):
    marker = tmp_path / "unpickled-marker"
    control = tmp_path / "control-marker"
    folder = tmp_path / "export"
    folder.mkdir()
    np.save(folder / "a0000.npy", np.array([payload(str(marker))], dtype=object), allow_pickle=True)
    np.save(tmp_path / "control.npy", np.array([payload(str(control))], dtype=object), allow_pickle=True)
    (folder / "a0001.npy").write_bytes(pickle.dumps(payload(str(marker))))  # a bare pickle, too
    write_manifest(folder, {"x": ok({"__array__": "a0000.npy", "dtype": "object", "shape": [1]}),
                            "y": ok({"__array__": "a0001.npy", "dtype": "object", "shape": [1]})})
    artefacts = Artefacts(folder)
    for name in ("x", "y"):
        with pytest.raises(NotCollected, match="cannot read"):
            artefacts.get(name)
    assert not marker.exists()
    # The payload is live: the same kind of file does run code when pickle is allowed.
    np.load(tmp_path / "control.npy", allow_pickle=True)
    assert control.exists()


@pytest.mark.parametrize("shape, dtype", [([3, 2], "float32"), ([2, 3], "float64"), ([6], "float32")])
def test_array_that_does_not_match_its_manifest_entry_is_refused(tmp_path, shape, dtype):
    np.save(tmp_path / "a0000.npy", np.zeros((2, 3), dtype=np.float32))
    write_manifest(tmp_path, {"x": ok({"__array__": "a0000.npy", "dtype": dtype, "shape": shape})})
    with pytest.raises(NotCollected, match="does not match its manifest entry"):
        Artefacts(tmp_path).get("x")


@pytest.mark.parametrize("name", ["../x.npy", "/tmp/x.npy", "a0000.npy/../../x.npy", "x.npy", "a00000.npy",
                                  "manifest.json"])
def test_bad_array_file_names_are_refused(tmp_path, name):
    folder = tmp_path / "export"
    folder.mkdir()
    np.save(tmp_path / "x.npy", np.ones(2))  # a real array just outside the export folder
    np.save(folder / "x.npy", np.ones(2))
    write_manifest(folder, {"x": ok({"__array__": name, "dtype": "float64", "shape": [2]})})
    with pytest.raises(NotCollected, match="bad array file name"):
        Artefacts(folder).get("x")


def test_oversized_manifest_is_not_read(tmp_path):
    manifest = tmp_path / "manifest.json"
    with open(manifest, "wb") as handle:  # sparse: takes no disk space
        handle.truncate(decode.MAX_MANIFEST_BYTES + 1)
    artefacts = Artefacts(tmp_path)
    assert artefacts.entries == {}
    with pytest.raises(NotCollected, match="the exported manifest is too large"):
        artefacts.get("anything")


@pytest.mark.parametrize("text, reason", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "not valid JSON"),
])
def test_broken_manifest_gives_a_reason(tmp_path, text, reason):
    (tmp_path / "manifest.json").write_text(text)
    with pytest.raises(NotCollected, match=reason):
        Artefacts(tmp_path).get("x")


def test_no_export_at_all_says_the_harvest_did_not_run(tmp_path):
    with pytest.raises(NotCollected, match="the harvest did not run"):
        Artefacts(tmp_path).get("x")
    with pytest.raises(NotCollected, match="the kernel died"):
        Artefacts(tmp_path, unavailable_reason="the kernel died").get("x")


@pytest.mark.parametrize("value, why", [
    ([1, 2], "bare JSON list"),
    ({"__what__": 1}, "unknown node"),
    ({"__dict__": [[{"__list__": []}, 1]]}, "unhashable"),
    ({"__dict__": [[1, 2, 3]]}, "unpack"),
    ({"__int__": "12abc"}, "invalid literal"),
])
def test_malformed_values_become_not_collected(tmp_path, value, why):
    write_manifest(tmp_path, {"x": ok(value)})
    with pytest.raises(NotCollected, match=why):
        Artefacts(tmp_path).get("x")


def test_deep_nesting_is_refused(tmp_path):
    value = 1
    for _ in range(40):
        value = {"__list__": [value]}
    write_manifest(tmp_path, {"x": ok(value)})
    with pytest.raises(NotCollected, match="nested too deeply"):
        Artefacts(tmp_path).get("x")


def test_npz_disguised_as_npy_is_not_collected(tmp_path):
    with zipfile.ZipFile(tmp_path / "a0000.npy", "w") as zf:
        with zf.open("arr_0.npy", "w") as member:
            np.save(member, np.zeros(3))
    write_manifest(tmp_path, {"x": ok({"__array__": "a0000.npy", "dtype": "float64", "shape": [3]})})
    with pytest.raises(NotCollected):
        Artefacts(tmp_path).get("x")


# -- copy_out: the only files that leave the sandbox ---------------------------------------------------
def test_copy_out_keeps_plain_export_files_only(tmp_path):
    export_dir, target = tmp_path / "export", tmp_path / "out"
    export_dir.mkdir()
    secret = tmp_path / "secret.txt"
    secret.write_text("grader secret")
    (export_dir / "manifest.json").write_text('{"entries": {}}')
    np.save(export_dir / "a0000.npy", np.ones(3))
    os.symlink(secret, export_dir / "a0001.npy")
    os.symlink(secret, export_dir / "a0002.npy.lnk")
    (export_dir / "a0003.npy").mkdir()
    (export_dir / "run.sh").write_text("echo hi\n")
    (export_dir / "a1.npy").write_bytes(b"x")
    problems = copy_out(export_dir, target)
    assert sorted(p.name for p in target.iterdir()) == ["a0000.npy", "manifest.json"]
    assert not any(p.is_symlink() for p in target.iterdir())
    assert "ignored a0001.npy: not a plain file" in problems
    assert "ignored a0003.npy: not a plain file" in problems
    assert "ignored run.sh: not an export file" in problems
    assert "ignored a1.npy: not an export file" in problems
    assert len(problems) == 5


def test_copy_out_ignores_a_symlinked_manifest(tmp_path):
    export_dir, target = tmp_path / "export", tmp_path / "out"
    export_dir.mkdir()
    outside = tmp_path / "elsewhere.json"
    outside.write_text('{"entries": {"x": {"status": "ok", "value": 1}}}')
    os.symlink(outside, export_dir / "manifest.json")
    assert copy_out(export_dir, target) == ["ignored manifest.json: not a plain file"]
    assert not (target / "manifest.json").exists()


def test_copy_out_of_a_missing_folder_copies_nothing(tmp_path):
    assert copy_out(tmp_path / "nothing-here", tmp_path / "out") == []
    assert list((tmp_path / "out").iterdir()) == []


def test_copy_out_refuses_a_name_with_a_trailing_newline(tmp_path):
    export_dir, target = tmp_path / "export", tmp_path / "out"
    export_dir.mkdir()
    (export_dir / "a0000.npy\n").write_bytes(b"not an array")
    copy_out(export_dir, target)
    assert list(target.iterdir()) == []


def test_copy_out_does_not_follow_an_export_folder_swapped_for_a_link(tmp_path):
    """The student's uid owns the folder the export lies in: it may put a link to another run's (or
    the reference's) artefacts where its export was."""
    elsewhere, runtime, target = tmp_path / "reference", tmp_path / "runtime", tmp_path / "out"
    elsewhere.mkdir()
    runtime.mkdir()
    (elsewhere / "manifest.json").write_text('{"entries": {"x": {"status": "ok", "value": 1}}}')
    np.save(elsewhere / "a0000.npy", np.ones(3))
    os.symlink(elsewhere, runtime / "export")
    assert copy_out(runtime / "export", target) == ["ignored the export folder: not a plain folder"]
    assert list(target.iterdir()) == []


def test_copy_out_skips_a_fifo_without_waiting_for_a_writer(tmp_path):
    export_dir, target = tmp_path / "export", tmp_path / "out"
    export_dir.mkdir()
    os.mkfifo(export_dir / "a0000.npy")
    (export_dir / "manifest.json").write_text('{"entries": {}}')
    assert copy_out(export_dir, target) == ["ignored a0000.npy: not a plain file"]
    assert sorted(p.name for p in target.iterdir()) == ["manifest.json"]


def test_offered_values_are_computed_only_when_asked_for(tmp_path):
    """The harvest's second step (Exporter.on_request / answer): what is not asked for is never run."""
    exporter = Exporter(str(tmp_path))
    calls = []
    exporter.value("x", lambda: 1)
    exporter.on_request("asked", lambda: calls.append("asked") or np.arange(3))
    exporter.on_request("not asked", lambda: calls.append("not asked") or 2)
    exporter.write()
    first = Artefacts(tmp_path)
    assert first.get("x") == 1
    assert first.status("asked") == first.status("not asked") == ON_REQUEST
    exporter.answer(["asked", "never offered"])
    assert calls == ["asked"]
    second = Artefacts(tmp_path)
    assert second.get("asked").tolist() == [0, 1, 2] and second.get("x") == 1
    assert second.status("not asked") == ON_REQUEST
    assert "never offered" not in second.entries
    with pytest.raises(NotCollected, match="computed only when the graders need it"):
        second.get("not asked")
