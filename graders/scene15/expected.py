"""The reference's values for the scene15 graders, under the same names the harvest uses.

Runs in the grader's process with the reference solution, on the same data, weights and probes as
the sandbox. Its output is cached per (data, weights, probes, reference source): see
autograder/workspace.py.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from reference import scene15 as ref

# S5's upstream rows: the harvest runs the student's own extract_features + VGG16relu7 on these
# items of each split (first and last, in ImageFolder order); test_scene15.py uses the same list.
UPSTREAM_ITEMS = (0, -1)
LOGITS_SEED = 15


def build_probe_inputs(probes: Path) -> None:
    """Grader-made inputs derived from the probe images.

    relu7_input.npy: the handout's preprocessing of the S3 probe photographs (a batch for VGG16relu7).
    predict_logits.npy: the scores the harness's stand-in model returns for each S1 probe (sorted
    file order), one clear maximum each at a class chosen by the grader.
    """
    files = sorted((probes / "relu7").iterdir())
    batch = torch.stack([ref.to_input(Image.open(f)) for f in files])
    np.save(probes / "relu7_input.npy", batch.numpy(), allow_pickle=False)
    rng = np.random.default_rng(LOGITS_SEED)
    n = len(list((probes / "predict").iterdir()))
    logits = rng.normal(size=(n, 1000)).astype(np.float32)
    targets = rng.choice(1000, size=n, replace=False)
    for row, target in enumerate(targets):
        logits[row, target] = logits[row].max() + 2.0
    np.save(probes / "predict_logits.npy", logits, allow_pickle=False)


def compute(ex, data_dir: Path, probes: Path) -> None:
    solved = ref.solve(data_dir)
    for name in ("classes", "vgg16_param_count", "vgg16_output_size", "X_train", "X_test", "y_train", "y_test",
                 "svm_score", "C_scores", "best_C"):
        ex.value(name, lambda: solved[name])
    ex.value("svm:coef", lambda: solved["svm"].coef_)
    ex.value("svm:intercept", lambda: solved["svm"].intercept_)
    ex.value("svm:classes", lambda: solved["svm"].classes_)

    # S1: the input the model must receive, and the answer the grader's scores imply.
    logits = np.load(probes / "predict_logits.npy")
    for row, file in enumerate(sorted(os.listdir(probes / "predict"))):
        ex.value(f"predict:{file}:input", lambda: ref.to_input(Image.open(probes / "predict" / file)).unsqueeze(0))
        target = int(np.argmax(logits[row]))
        ex.value(f"predict:{file}", lambda: (target, ref.CATEGORIES[target]))

    # S3: relu7 of the same weights on the grader-made batch.
    batch = torch.from_numpy(np.load(probes / "relu7_input.npy"))
    with torch.no_grad():
        ex.value("relu7:output", lambda: solved["relu7"](batch))

    # S4: the unseen grayscale dataset, preprocessed and through the same relu7.
    probe_set = ref.image_folder(probes / "extract_set")
    inputs = torch.stack([ref.to_input(probe_set[i][0]) for i in range(len(probe_set))])
    ex.value("extract:inputs", lambda: inputs)
    with torch.no_grad():
        ex.value("extract:raw", lambda: solved["relu7"](inputs))  # what the model returns, unnormalised
    ex.value("extract:probe", lambda: ref.extract_features(probe_set, solved["relu7"]))
    ex.write()
