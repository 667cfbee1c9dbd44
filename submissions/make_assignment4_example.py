"""Writes the bundled example of the wikiart/saliency handout's single archive (run it after editing).

    .venv/bin/python submissions/make_assignment4_example.py

`cs587_carol_assignment4.zip`, as the handout asks for it: the working folder with both parts'
notebooks (the bundled correct examples), the TensorBoard summaries of both fine-tuning variants and
a PDF report. The same archive goes into submissions/wikiart/ and submissions/saliency/: each batch
grades its own part of it. `assignment4_times.csv` holds the submission times a TA would export from
the LMS, for the late policy of graders/{wikiart,saliency}/course.toml:

    .venv/bin/python grade.py batch submissions/wikiart -a wikiart --out out/wikiart \\
        --submission-times submissions/assignment4_times.csv
"""
from __future__ import annotations

import shutil
import tempfile
import zipfile
from pathlib import Path

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
ARCHIVE = "cs587_carol_assignment4.zip"
# alice on time, bob a day and a minute late (two started days: 50 %), carol just in time (Athens time).
TIMES = """id,submitted_at
alice_correct,2026-12-11T21:10:00+02:00
bob_buggy,2026-12-13T00:00:00+02:00
carol,2026-12-11T23:58:30+02:00
"""


def write_events(folder: Path, scalars: dict[str, list[float]]) -> None:
    from torch.utils.tensorboard import SummaryWriter
    writer = SummaryWriter(str(folder))
    for tag, values in scalars.items():
        for step, value in enumerate(values):
            writer.add_scalar(tag, float(value), step)
    writer.close()


def write_report(path: Path) -> None:
    figure, axes = plt.subplots(figsize=(8.27, 11.69))   # an A4 page
    figure.suptitle("CS587 Assignment 4: carol")
    axes.plot([0, 1, 2, 3, 4, 5], [2.3, 1.5, 1.1, 0.8, 0.7, 0.6], label="training loss (last layer)")
    axes.legend()
    axes.set_title("W5: fine-tuning only the last layer converges fastest; ...")
    figure.savefig(path)
    plt.close(figure)


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch) / "cs587_carol_assignment4"
        work.mkdir()
        shutil.copyfile(HERE / "wikiart" / "alice_correct.ipynb", work / "wikiart_finetuning.ipynb")
        shutil.copyfile(HERE / "saliency" / "alice_correct.ipynb", work / "saliency_maps.ipynb")
        epochs = np.arange(8)
        for variant, speed in (("last_layer", 1.0), ("last_two_layers", 0.7)):
            write_events(work / "runs" / variant, {
                "Loss/train": 2.3 * np.exp(-speed * epochs / 2) + 0.1,
                "Loss/val": 2.4 * np.exp(-speed * epochs / 2.5) + 0.2,
                "Accuracy/val": 0.25 + 0.07 * speed * epochs})
        write_report(work / "report.pdf")
        archive = Path(scratch) / ARCHIVE
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(work.rglob("*")):
                zf.write(path, path.relative_to(work.parent).as_posix())
        for part in ("wikiart", "saliency"):
            shutil.copyfile(archive, HERE / part / ARCHIVE)
    (HERE / "assignment4_times.csv").write_text(TIMES)


if __name__ == "__main__":
    main()
