"""The student's own files beside the code: TensorBoard logs drawn beside the harness's run, a PDF's
first page under the manual items; bad files noted, never fatal. Then the handout's one archive
(wikiart + saliency notebooks, logs, a PDF) graded through the CLI once per part."""
from __future__ import annotations

import base64
import html
import io
import json
import re
import shutil
import struct
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from autograder import assignments, attachments  # noqa: E402
from autograder.attachments import collect  # noqa: E402
from autograder.intake import prepare  # noqa: E402
from autograder.reports.html import render_report  # noqa: E402
from autograder.reports.pictures import curve_panels, curves_picture  # noqa: E402
from autograder.verdicts import Figures, Grade, Verdict  # noqa: E402
from conftest import CHROMIUM, screenshot_of  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
PDFTOPPM = shutil.which("pdftoppm")
needs_pdftoppm = pytest.mark.skipif(PDFTOPPM is None, reason="pdftoppm (poppler-utils) is not installed")
PNG = b"\x89PNG\r\n\x1a\n"


def write_events(folder: Path, scalars: dict[str, list[float]]) -> Path:
    """TensorBoard event files as a student's SummaryWriter writes them; returns the file."""
    from torch.utils.tensorboard import SummaryWriter
    writer = SummaryWriter(str(folder))
    for tag, values in scalars.items():
        for step, value in enumerate(values):
            writer.add_scalar(tag, value, step)
    writer.close()
    return next(folder.glob("events.out.tfevents.*"))


def write_pdf(path: Path, title: str = "Assignment 4 report") -> Path:
    figure, axes = plt.subplots(figsize=(8.27, 11.69))   # an A4 page
    axes.plot([0, 1, 2], [2.3, 1.1, 0.6])
    axes.set_title(title)
    figure.savefig(path)
    plt.close(figure)
    return path


def submission_of(folder: Path, tmp_path: Path):
    """An intake Submission of a folder holding a notebook (what `prepare` hands the pipeline)."""
    folder.mkdir(parents=True, exist_ok=True)
    if not any(folder.rglob("*.ipynb")):
        shutil.copyfile(REPO / "submissions" / "wikiart" / "alice_correct.ipynb", folder / "wikiart.ipynb")
    scratch = tmp_path / "scratch"
    scratch.mkdir(exist_ok=True)
    return prepare(folder, scratch)


def png_size(data: str) -> tuple[int, int]:
    raw = base64.b64decode(data)
    assert raw.startswith(PNG)
    with Image.open(io.BytesIO(raw)) as image:
        return image.size


# -- TensorBoard event files ------------------------------------------------------------------------------
def test_logs_anywhere_in_the_entry_are_read_and_named_by_their_run_folder(tmp_path):
    folder = tmp_path / "alice"
    (folder / "code").mkdir(parents=True)
    shutil.copyfile(REPO / "submissions" / "wikiart" / "alice_correct.ipynb", folder / "code" / "wikiart.ipynb")
    write_events(folder / "runs" / "last", {"Loss/train": [2.0, 1.0, 0.5], "Accuracy/val": [0.2, 0.4, 0.6]})
    write_events(folder / "runs" / "last_two", {"Loss/train": [2.2, 1.5, 0.9]})
    found = collect(submission_of(folder, tmp_path))
    # The logs sit outside the notebook's folder: still found (the handout's archive is a whole folder).
    assert [Path(log).parts[:2] for log in found.logs] == [("runs", "last"), ("runs", "last_two")]
    assert found.series == {"last/Loss/train": [(0, 2.0), (1, 1.0), (2, 0.5)],
                            "last/Accuracy/val": [(0, pytest.approx(0.2)), (1, pytest.approx(0.4)),
                                                  (2, pytest.approx(0.6))],
                            "last_two/Loss/train": [(0, pytest.approx(2.2)), (1, 1.5), (2, pytest.approx(0.9))]}
    assert found.notes == []
    width, height = png_size(found.picture)
    assert width > 400 and height > 150


def test_a_single_run_folder_gives_the_bare_tags(tmp_path):
    folder = tmp_path / "bob"
    write_events(folder / "logs", {"train_loss": [1.0, 0.5], "val_acc": [0.5, 0.7]})
    found = collect(submission_of(folder, tmp_path))
    assert sorted(found.series) == ["train_loss", "val_acc"]


def test_bad_event_files_get_a_note_each_and_the_good_one_is_still_drawn(tmp_path):
    folder = tmp_path / "carol"
    write_events(folder / "runs" / "good", {"loss": [1.0, 0.5, 0.25]})
    junk = folder / "runs" / "junk" / "events.out.tfevents.1.junk"
    junk.parent.mkdir(parents=True)
    junk.write_bytes(b"this is not a TensorBoard file at all" * 10)
    # A frame claiming a terabyte: read only up to it, never allocated.
    forged = folder / "runs" / "forged" / "events.out.tfevents.2.forged"
    forged.parent.mkdir(parents=True)
    good = next((folder / "runs" / "good").glob("*tfevents*")).read_bytes()
    forged.write_bytes(good + struct.pack("<Q", 2**40) + b"\0" * 64)
    started = time.monotonic()
    found = collect(submission_of(folder, tmp_path))
    assert time.monotonic() - started < 30
    assert [Path(log).parent.as_posix() for log in found.logs] == ["runs/forged", "runs/good"]
    assert "forged/loss" in found.series and "good/loss" in found.series   # the frames before the forged one
    assert found.notes == ["runs/junk/events.out.tfevents.1.junk: no scalar values could be read "
                           "(not a TensorBoard event file, or damaged)"]
    assert found.picture is not None


def test_event_files_past_the_bounds_are_not_read(tmp_path, monkeypatch):
    folder = tmp_path / "dave"
    for run in ("a", "b", "c"):
        write_events(folder / "runs" / run, {"loss": [1.0, 0.5]})
    big = folder / "runs" / "big" / "events.out.tfevents.9.big"
    big.parent.mkdir(parents=True)
    big.write_bytes(b"\0" * 5000)
    monkeypatch.setattr(attachments, "MAX_EVENT_FILE_BYTES", 4096)
    monkeypatch.setattr(attachments, "MAX_EVENT_FILES", 3)
    found = collect(submission_of(folder, tmp_path))
    assert found.notes[0] == "4 event files: only the first 3 were read"
    assert found.notes[1].startswith("runs/big/events.out.tfevents.9.big: not read: 0 MiB, above the 0 MiB bound")
    assert sorted(found.series) == ["a/loss", "b/loss"]


def test_an_event_file_with_images_only_says_so(tmp_path):
    from torch.utils.tensorboard import SummaryWriter
    folder = tmp_path / "erin"
    writer = SummaryWriter(str(folder / "runs" / "pictures"))
    writer.add_image("sample", np.zeros((3, 8, 8), dtype=np.float32), 0)
    writer.close()
    found = collect(submission_of(folder, tmp_path))
    assert found.series == {} and found.picture is None
    assert len(found.notes) == 1 and found.notes[0].endswith("holds no scalar values (only images)")


def test_an_assignment_without_logs_leaves_them_out_and_keeps_the_documents(tmp_path):
    folder = tmp_path / "ola"
    write_events(folder / "runs" / "last", {"Loss/train": [2.0, 1.0]})
    write_pdf(folder / "report.pdf")
    found = collect(submission_of(folder, tmp_path), with_logs=False)
    assert not found.has_logs and found.picture is None and found.notes == []
    assert [d.name for d in found.documents] == ["report.pdf"]


def test_no_logs_and_no_documents_is_empty_and_quiet(tmp_path):
    found = collect(submission_of(tmp_path / "frank", tmp_path))
    assert (found.series, found.logs, found.documents, found.notes, found.has_logs) == ({}, [], [], [], False)


def test_collect_never_raises_on_a_file_that_vanished(tmp_path):
    folder = tmp_path / "gina"
    write_events(folder / "runs" / "a", {"loss": [1.0]})
    write_pdf(folder / "report.pdf")
    submission = submission_of(folder, tmp_path)
    for path in submission.contents:
        if path.suffix != ".ipynb":
            path.unlink()
    found = collect(submission)
    assert found.series == {} and len(found.notes) == 1 and "could not be read (FileNotFoundError" in found.notes[0]
    assert [d.note for d in found.documents] == ["cannot be read (No such file or directory)"]


# -- pictures of curves -------------------------------------------------------------------------------------
def test_curves_are_grouped_into_loss_accuracy_and_other_panels():
    names = ["val/acc", "Loss/train", "lr", "train_accuracy", "val_loss"]
    assert curve_panels(names) == [("Loss", ["Loss/train", "val_loss"]), ("Accuracy", ["train_accuracy", "val/acc"]),
                                   ("Other scalars", ["lr"])]


def test_odd_tag_names_and_values_still_draw():
    series = {"$\\frac{loss": [(0, 1.0), (1, float("nan")), (2, float("inf")), (3, 0.5)],
              "_hidden_acc": [(0, 0.1), (1, 0.2)], "x" * 300: [(0, 1e300), (5, -1e300)]}
    width, height = png_size(curves_picture(series, "a $title"))
    assert width > 600 and height > 150


def test_the_figures_fixture_keeps_only_plain_series():
    figures = Figures()
    figures.curves("run", {"loss": [(0, 1.0), (1, 0.5)], "bad": ["not a pair"], 3: [(0, 1)]})
    figures.curves("not a mapping", "loss")
    figures.curves("empty", {})
    assert [(f.title, f.kind, f.series) for f in figures.items] == [
        ("run", "curves", {"loss": [(0, 1.0), (1, 0.5)], "3": [(0, 1.0)]})]


# -- documents ------------------------------------------------------------------------------------------------
@needs_pdftoppm
def test_a_pdf_gets_a_thumbnail_of_its_first_page(tmp_path):
    folder = tmp_path / "hana"
    folder.mkdir()
    write_pdf(folder / "report.pdf")
    found = collect(submission_of(folder, tmp_path))
    [document] = found.documents
    assert (document.name, document.kind, document.note) == ("report.pdf", "PDF", "")
    width, height = png_size(document.thumbnail)
    assert height == 400 and 250 < width < 300          # an A4 page, its long side scaled to 400 px
    raw = Image.open(io.BytesIO(base64.b64decode(document.thumbnail))).convert("L")
    assert np.asarray(raw).min() < 100                  # the page's drawing is there, not a blank page


@needs_pdftoppm
def test_documents_that_cannot_be_shown_say_why(tmp_path):
    folder = tmp_path / "ivan"
    folder.mkdir()
    (folder / "answers.docx").write_bytes(b"PK\x03\x04 a word file")
    (folder / "fake.pdf").write_text("hello, I am not a PDF")
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4\n1 0 obj garbage")
    found = collect(submission_of(folder, tmp_path))
    notes = {d.name: (d.kind, d.thumbnail, d.note) for d in found.documents}
    assert notes["answers.docx"] == ("Word document", None,
                                     "a Word document: listed by name, no thumbnail (open it from the submission)")
    assert notes["fake.pdf"] == ("PDF", None, "no thumbnail: the file is not a PDF (no %PDF- header in its first KiB)")
    assert notes["broken.pdf"][1] is None
    assert notes["broken.pdf"][2].startswith("no thumbnail: pdftoppm could not render the first page (")


def test_without_pdftoppm_the_report_says_so(tmp_path, monkeypatch):
    folder = tmp_path / "jo"
    folder.mkdir()
    write_pdf(folder / "report.pdf")
    monkeypatch.setattr(attachments.shutil, "which", lambda name: None)
    [document] = collect(submission_of(folder, tmp_path)).documents
    assert document.thumbnail is None and document.note == attachments.PDFTOPPM_MISSING
    assert "poppler-utils" in document.note


def fake_tool(tmp_path: Path, body: str) -> Path:
    """A shell script in pdftoppm's place (a shell: the tool's jail has /usr, not the test's venv)."""
    tool = tmp_path / "bin" / "pdftoppm"
    tool.parent.mkdir(exist_ok=True)
    tool.write_text(f"#!/bin/sh\n{body}\n")
    tool.chmod(0o755)
    return tool


def test_a_pdftoppm_that_hangs_is_stopped_at_the_timeout(tmp_path, monkeypatch):
    folder = tmp_path / "kim"
    folder.mkdir()
    write_pdf(folder / "report.pdf")
    tool = fake_tool(tmp_path, "exec sleep 60")
    monkeypatch.setattr(attachments.shutil, "which", lambda name: str(tool))
    monkeypatch.setattr(attachments, "PDFTOPPM_TIMEOUT_S", 1)
    started = time.monotonic()
    [document] = collect(submission_of(folder, tmp_path)).documents
    assert time.monotonic() - started < 20
    assert document.note == "no thumbnail: pdftoppm needed more than 1 s for the first page"


def test_a_pdftoppm_that_writes_too_much_is_stopped_by_the_file_size_limit(tmp_path, monkeypatch):
    folder = tmp_path / "lee"
    folder.mkdir()
    write_pdf(folder / "report.pdf")
    tool = fake_tool(tmp_path, 'eval "last=\\${$#}"; exec yes PNG > "$last.png"')   # its last argument: the prefix
    monkeypatch.setattr(attachments.shutil, "which", lambda name: str(tool))
    monkeypatch.setattr(attachments, "THUMBNAIL_MAX_BYTES", 1024 * 1024)
    [document] = collect(submission_of(folder, tmp_path)).documents
    assert document.thumbnail is None
    assert document.note.startswith("no thumbnail: pdftoppm could not render the first page (")


# -- the report ---------------------------------------------------------------------------------------------
def wikiart_grade(figures: Figures) -> Grade:
    verdicts = [Verdict("W4", "W4 train", 3.0, 3.0, "passed"),
                Verdict("W5", "W5 should I fine-tune? (to be marked by a TA)", 0.0, 3.0, "to mark",
                        "Your answer:\n...")]
    return Grade("cs587_alice_assignment4", "wikiart", verdicts, figures.items)


def test_the_report_draws_both_runs_and_lists_the_document_under_the_manual_items(tmp_path):
    folder = tmp_path / "mia"
    write_events(folder / "runs" / "last", {"Loss/train": [2.0, 1.0], "Accuracy/val": [0.3, 0.5]})
    write_pdf(folder / "report.pdf")
    found = collect(submission_of(folder, tmp_path))
    figures = Figures()
    figures.curves("What your train() logged in the harness's run", {"Loss/train": [(0, 1.1), (1, 1.0)]})
    page = render_report(assignments.load("wikiart"), wikiart_grade(figures), None, [], "10 of 13 points.",
                         attachments=found)
    assert re.search(r'<figure id="own-curves"[^>]*><img alt="your own TensorBoard curves" '
                     r'src="data:image/png;base64,[A-Za-z0-9+/=]{1000,}"', page)
    assert re.search(r'<img alt="the harness.s run: What your train\(\) logged in the harness&#39;s run" '
                     r'src="data:image/png;base64,[A-Za-z0-9+/=]{1000,}"', page)
    # The documents come right after the task table (the manual items), before the curves.
    assert page.index('id="task-W5"') < page.index('id="documents"') < page.index('id="curves"')
    assert "for the free-text items (W5)" in page
    if PDFTOPPM:
        assert re.search(r'<img alt="first page of report.pdf" src="data:image/png;base64,', page)


def test_a_report_without_logs_says_only_the_harness_run_is_drawn(tmp_path):
    found = collect(submission_of(tmp_path / "ned", tmp_path))
    figures = Figures()
    figures.curves("harness run", {"loss": [(0, 1.0), (1, 0.5)]})
    page = render_report(assignments.load("wikiart"), wikiart_grade(figures), None, [], "", attachments=found)
    assert "No TensorBoard event files" in page and 'id="own-curves"' not in page and 'id="documents"' not in page
    # Without attachments (an entry intake refused) nothing of this appears, and nothing breaks.
    bare = render_report(assignments.load("wikiart"), wikiart_grade(Figures()), None, [], "")
    assert 'id="curves"' not in bare and 'id="documents"' not in bare


# -- the handout's one archive through the CLI ---------------------------------------------------------------
@pytest.fixture(scope="module")
def assignment4_zip(tmp_path_factory) -> Path:
    """cs587_alice_assignment4.zip: both parts' notebooks, the logs of both fine-tuning variants, a PDF."""
    work = tmp_path_factory.mktemp("alice") / "cs587_alice_assignment4"
    work.mkdir()
    shutil.copyfile(REPO / "submissions" / "wikiart" / "alice_correct.ipynb", work / "wikiart.ipynb")
    shutil.copyfile(REPO / "submissions" / "saliency" / "alice_correct.ipynb", work / "saliency.ipynb")
    for variant, speed in (("last", 1.0), ("last_two", 0.7)):
        epochs = np.arange(6)
        write_events(work / "runs" / variant, {"Loss/train": list(2.3 * np.exp(-speed * epochs / 2) + 0.1),
                                               "Accuracy/train": list(0.3 + 0.1 * speed * epochs),
                                               "Accuracy/val": list(0.25 + 0.08 * speed * epochs)})
    write_pdf(work / "report.pdf")
    archive = work.parent / "cs587_alice_assignment4.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(work.rglob("*")):
            zf.write(path, path.relative_to(work.parent).as_posix())
    return archive


def check(archive: Path, assignment: str, out: Path) -> tuple[str, dict, Path]:
    python = REPO / ".venv" / "bin" / "python"
    done = subprocess.run([str(python if python.exists() else sys.executable), "grade.py", "check", str(archive),
                           "--assignment", assignment, "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    folder = out / "cs587_alice_assignment4"
    results = json.loads((folder / "results.json").read_text())
    return (folder / "report.html").read_text(encoding="utf-8"), results, folder


@pytest.mark.slow
def test_the_archive_is_graded_as_wikiart_with_the_student_s_curves_and_report(assignment4_zip, tmp_path):
    page, results, folder = check(assignment4_zip, "wikiart", tmp_path / "out")
    # The wikiart notebook was run (its title cell), and every graded task has full marks.
    executed = json.loads((folder / "executed.ipynb").read_text())
    assert "".join(executed["cells"][0]["source"]).startswith("# wikiart: Alice A.")
    assert results["score"] == 10.0
    assert all(t["score"] == t["max_score"] for t in results["tests"] if not t["name"].startswith("W5"))
    own = re.search(r'<img alt="your own TensorBoard curves" src="data:image/png;base64,([^"]+)"', page)
    harness = re.search(r'<img alt="the harness.s run: [^"]*" src="data:image/png;base64,([^"]+)"', page)
    assert own and harness, "both runs' curves are drawn"
    for match in (own, harness):
        assert png_size(match.group(1))[0] > 400
    assert "cs587_alice_assignment4/runs/last/events.out.tfevents." in html.unescape(page)
    if PDFTOPPM:
        thumbnail = re.search(r'<img alt="first page of cs587_alice_assignment4/report.pdf" '
                              r'src="data:image/png;base64,([^"]+)"', page)
        assert thumbnail and png_size(thumbnail.group(1))[1] == 400
    if CHROMIUM:   # the page as a browser shows it: the curves and the page thumbnail are drawn
        shot = screenshot_of(folder / "report.html", folder.parent / "shot" / "shot.png", 1200, 2600)
        with Image.open(shot) as image:
            colours = image.convert("RGB").getcolors(maxcolors=1200 * 2600)
        vivid = sum(count for count, (r, g, b) in colours if max(r, g, b) - min(r, g, b) > 80)
        assert vivid > 2000, f"{vivid} coloured pixels: the curves did not render"


@pytest.mark.slow
def test_the_same_archive_is_graded_as_saliency_on_its_other_notebook(assignment4_zip, tmp_path):
    page, results, folder = check(assignment4_zip, "saliency", tmp_path / "out")
    executed = json.loads((folder / "executed.ipynb").read_text())
    assert "".join(executed["cells"][0]["source"]).startswith("# Image-class saliency maps")
    assert results["score"] == 7.0
    assert all(t["score"] == t["max_score"] for t in results["tests"] if not t["name"].startswith("M3"))
    assert "for the free-text items (M3)" in page
    if PDFTOPPM:
        assert '<img alt="first page of cs587_alice_assignment4/report.pdf" src="data:image/png;base64,' in page
    # The archive's TensorBoard logs are wikiart's (W4): the saliency report does not draw them.
    assert 'id="curves"' not in page and "TensorBoard" not in page
