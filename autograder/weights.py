"""The weight store: torchvision checkpoints under the exact names torchvision looks up offline.

torchvision loads `$TORCH_HOME/hub/checkpoints/<basename of the weights URL>` when that file
exists, without a hash check or a download. The store holds, per checkpoint, either the real file a
TA copied in (`grade.py weights add FILE`) or a deterministic stand-in: the architecture's own
initialisation under a fixed seed, so grading works offline and every run sees the same numbers.
`manifest.json` records which is which; every report says so.

The store is written only here, by the grader, and mounted read-only in the sandbox: torchvision
unpickles these files (weights_only=False), so whoever writes them could run code in the grader.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

STANDIN_SEED = 20261123


@dataclass(frozen=True)
class Checkpoint:
    model: str            # torchvision.models builder name
    weights: str          # enum name, e.g. "ResNet18_Weights.IMAGENET1K_V1"
    file_name: str        # basename of the enum's URL: what torchvision looks up (a test checks it)
    builder_kwargs: tuple = ()

    def url_file_name(self) -> str:
        """The name torchvision itself derives (imports torchvision: tests only, not start-up)."""
        return Path(self._enum().url).name

    def _enum(self):
        from torchvision import models
        enum_name, member = self.weights.split(".")
        return getattr(getattr(models, enum_name), member)

    def build_standin(self):
        import torch
        from torchvision import models
        torch.manual_seed(STANDIN_SEED)
        return getattr(models, self.model)(weights=None, **dict(self.builder_kwargs))


CHECKPOINTS = {
    "resnet18": Checkpoint("resnet18", "ResNet18_Weights.IMAGENET1K_V1", "resnet18-f37072fd.pth"),
    "vgg16": Checkpoint("vgg16", "VGG16_Weights.IMAGENET1K_V1", "vgg16-397923af.pth"),
    "alexnet": Checkpoint("alexnet", "AlexNet_Weights.IMAGENET1K_V1", "alexnet-owt-7be5be79.pth"),
    # strict loading needs the AuxLogits keys; init_weights=False keeps the stand-in fast.
    "inception_v3": Checkpoint("inception_v3", "Inception_V3_Weights.IMAGENET1K_V1",
                               "inception_v3_google-0cc3c7bd.pth",
                               (("aux_logits", True), ("init_weights", False))),
}


class WeightStore:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.checkpoints = self.root / "hub" / "checkpoints"
        self.manifest_path = self.root / "manifest.json"

    # -- reading ----------------------------------------------------------------------------
    def manifest(self) -> dict:
        if self.manifest_path.exists():
            return json.loads(self.manifest_path.read_text())
        return {}

    def kind(self, model: str) -> str:
        """'real', 'stand-in' or 'missing'."""
        entry = self.manifest().get(CHECKPOINTS[model].file_name)
        if entry is None or not (self.checkpoints / CHECKPOINTS[model].file_name).exists():
            return "missing"
        return entry["kind"]

    def describe(self, models: list[str]) -> list[dict]:
        """One line per model, for reports: which checkpoint graded this, real or stand-in."""
        manifest = self.manifest()
        rows = []
        for model in models:
            name = CHECKPOINTS[model].file_name
            entry = manifest.get(name, {})
            rows.append({"model": model, "file": name, "kind": self.kind(model),
                         "sha256": entry.get("sha256", "")[:12]})
        return rows

    def fingerprint(self, models: list[str]) -> str:
        """Changes whenever any of these checkpoints changes: part of the reference cache key."""
        manifest = self.manifest()
        parts = [f"{m}:{manifest.get(CHECKPOINTS[m].file_name, {}).get('sha256', 'missing')}" for m in models]
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]

    # -- writing ----------------------------------------------------------------------------
    def ensure(self, models: list[str]) -> list[str]:
        """Write a stand-in for every model that has no checkpoint yet; returns what was written."""
        written = []
        for model in models:
            if self.kind(model) == "missing":
                self._write_standin(model)
                written.append(model)
        return written

    def add_real(self, path: Path) -> str:
        """Take a real torchvision checkpoint a TA copied in; returns the model it belongs to."""
        path = Path(path)
        model = next((m for m, c in CHECKPOINTS.items() if c.file_name == path.name), None)
        if model is None:
            known = ", ".join(c.file_name for c in CHECKPOINTS.values())
            raise ValueError(f"{path.name} is not a checkpoint the course uses (known: {known})")
        import torch
        state = torch.load(path, map_location="cpu", weights_only=True)
        expected = CHECKPOINTS[model].build_standin().state_dict()
        if set(state) != set(expected):
            raise ValueError(f"{path.name} does not hold the {model} parameters torchvision expects")
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        target = self.checkpoints / path.name
        partial = target.with_suffix(".partial")
        partial.write_bytes(path.read_bytes())
        partial.rename(target)
        self._record(path.name, "real", {"source": str(path)})
        return model

    def _write_standin(self, model: str) -> None:
        import torch
        checkpoint = CHECKPOINTS[model]
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        target = self.checkpoints / checkpoint.file_name
        partial = target.with_suffix(".partial")
        torch.save(checkpoint.build_standin().state_dict(), partial)
        partial.rename(target)  # atomic: torchvision never sees half a file
        self._record(checkpoint.file_name, "stand-in", {"seed": STANDIN_SEED})

    def _record(self, file_name: str, kind: str, extra: dict) -> None:
        digest = hashlib.sha256((self.checkpoints / file_name).read_bytes()).hexdigest()
        manifest = self.manifest()
        manifest[file_name] = {"kind": kind, "sha256": digest, **extra}
        self.manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True))
        # Readable by the sandbox's uid, writable by nobody but the grader.
        for folder in (self.root, self.root / "hub", self.checkpoints):
            os.chmod(folder, 0o755)
        os.chmod(self.checkpoints / file_name, 0o644)
        os.chmod(self.manifest_path, 0o644)
