"""What a submission holds beside its code: the student's TensorBoard logs and their written report.

The wikiart/saliency handout asks for both in the archive: the TensorBoard summaries of the student's
own training, and a PDF (or DOC) report with the free-text answers. The feedback report draws the
student's curves beside those of the harness's run, and shows the first page of each PDF under the
manual items, so the TA marking them has it at hand.

Everything here runs in the grader's process on files a student made, so each file is bounded
(size, count, time) and every failure becomes a one-line note for the report, never an exception:
- event files (`*tfevents*`, anywhere in the entry): at most MAX_EVENT_FILES, MAX_EVENT_FILE_BYTES each
  and MAX_EVENT_BYTES in all, read with tensorboard's own EventAccumulator, one file at a time. Their
  records are framed first: a length that runs past the end of the file is cut off there, so a forged
  length cannot make the reader allocate gigabytes. Series are named like graders/wikiart/harvest.py's
  read_scalars names them ('<sub folder>/<tag>'), relative to the folder holding all the logs.
- documents (.pdf, .doc, .docx, .odt): listed by name and size; a PDF's first page is rendered by
  Debian's pdftoppm (poppler-utils) in a jail of its own (sandbox/tools.py: no network, a private
  uid, only a copy of the PDF and its output folder visible), under a timeout and limits on the file
  it writes, its memory and its CPU time. Without pdftoppm the report says so.
"""
from __future__ import annotations

import base64
import contextlib
import logging
import math
import os
import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .sandbox.tools import ToolJail

MAX_EVENT_FILES = 32
MAX_EVENT_FILE_BYTES = 16 * 1024 * 1024      # ~4 s of tensorboard's pure-Python reading
MAX_EVENT_BYTES = 64 * 1024 * 1024
MAX_POINTS = 2000                            # per series: tensorboard's reservoir sampling keeps these
MAX_SERIES = 24
MAX_DOCUMENTS = 6
MAX_PDF_BYTES = 64 * 1024 * 1024
PDFTOPPM_TIMEOUT_S = 30
THUMBNAIL_PIXELS = 400                        # the longer side of the first page's picture
THUMBNAIL_MAX_BYTES = 4 * 1024 * 1024
DOCUMENT_KINDS = {".pdf": "PDF", ".doc": "Word document", ".docx": "Word document", ".odt": "OpenDocument text"}
PDFTOPPM_MISSING = ("no thumbnail: pdftoppm (Debian's poppler-utils) is not installed on this grader; "
                    "setup.sh installs it")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass
class Document:
    name: str                   # its path inside the submission
    size_bytes: int
    kind: str                   # "PDF", "Word document", ...
    thumbnail: str | None = None   # base64 PNG of the first page
    note: str = ""              # why there is no thumbnail

    @property
    def size_text(self) -> str:
        size = self.size_bytes
        if size < 1024:
            return f"{size} bytes"
        return f"{size / 1024:.0f} KiB" if size < 2**20 else f"{size / 2**20:.1f} MiB"


@dataclass
class Attachments:
    series: dict[str, list[tuple[int, float]]] = field(default_factory=dict)   # the student's own scalars
    logs: list[str] = field(default_factory=list)          # the event files read, by path inside the entry
    picture: str | None = None                               # base64 PNG of `series`
    documents: list[Document] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)          # one line per log that could not be used

    @property
    def has_logs(self) -> bool:
        return bool(self.logs or self.notes)


class _Unusable(Exception):
    """One file cannot be used; the message is the report's note (after the file's name)."""


def collect(submission, *, with_logs: bool = True) -> Attachments:
    """The logs and documents of an intake Submission. Never raises: what fails becomes a note.
    `with_logs`: read the TensorBoard event files (the assignment asks for them; the handout's one archive
    also carries the other part's, which that part's report leaves out)."""
    found = Attachments()
    root = Path(submission.root or submission.base)
    files = sorted(submission.contents or submission.files)
    try:
        logs = [p for p in files if "tfevents" in p.name] if with_logs else []
        documents = [p for p in files if p.suffix.lower() in DOCUMENT_KINDS]
        _read_logs(logs, root, found)
        _list_documents(documents, root, found)
    except Exception as error:  # noqa: BLE001 - the grade must never depend on these files
        found.notes.append(f"the files beside your code could not all be read ({type(error).__name__}: "
                           f"{str(error)[:160]})")
    return found


def _inside(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.name


# -- TensorBoard event files ----------------------------------------------------------------------------
def _read_logs(paths: list[Path], root: Path, found: Attachments) -> None:
    if not paths:
        return
    if len(paths) > MAX_EVENT_FILES:
        found.notes.append(f"{len(paths)} event files: only the first {MAX_EVENT_FILES} were read")
        paths = paths[:MAX_EVENT_FILES]
    # Series named relative to the folder holding every log: runs/a/... and runs/b/... give a/<tag>, b/<tag>.
    base = Path(os.path.commonpath([p.parent for p in paths]))
    budget = MAX_EVENT_BYTES
    for path in paths:
        name = _inside(path, root)
        try:
            size = path.stat().st_size
            if size > MAX_EVENT_FILE_BYTES:
                raise _Unusable(f"not read: {size / 2**20:.0f} MiB, above the {MAX_EVENT_FILE_BYTES // 2**20} MiB "
                                "bound for one event file (log scalars only, or fewer of them)")
            if size > budget:
                raise _Unusable(f"not read: the event files hold more than {MAX_EVENT_BYTES // 2**20} MiB in all")
            budget -= size
            series = read_event_file(path)
        except _Unusable as problem:
            found.notes.append(f"{name}: {problem}")
            continue
        except Exception as error:  # noqa: BLE001 - a damaged or forged file: noted, never fatal
            found.notes.append(f"{name}: could not be read ({type(error).__name__}: {str(error)[:160]})")
            continue
        found.logs.append(name)
        folder = path.parent.relative_to(base).as_posix()
        for tag, points in series.items():
            key = tag if folder == "." else f"{folder}/{tag}"
            found.series.setdefault(key, []).extend(points)
    for key, points in found.series.items():
        points.sort(key=lambda point: point[0])   # stable: a restarted run's files keep their order
        if len(points) > MAX_POINTS:
            step = len(points) / MAX_POINTS
            found.series[key] = [points[int(i * step)] for i in range(MAX_POINTS - 1)] + [points[-1]]
    if len(found.series) > MAX_SERIES:
        found.notes.append(f"{len(found.series)} scalar series: the first {MAX_SERIES} by name are drawn")
        found.series = dict(sorted(found.series.items())[:MAX_SERIES])
    if found.series:
        try:
            from .reports.pictures import curves_picture
            found.picture = curves_picture(found.series)
        except Exception as error:  # noqa: BLE001 - odd tag names or values must not cost the report
            found.notes.append(f"your curves could not be drawn ({type(error).__name__}: {str(error)[:160]})")


def read_event_file(path: Path) -> dict[str, list[tuple[int, float]]]:
    """tag -> [(step, value), ...] of one event file, with tensorboard's EventAccumulator (as harvest.py's
    read_scalars reads the harness's run); raises _Unusable when it holds no scalar."""
    from tensorboard.backend.event_processing import event_accumulator as ea

    guidance = {ea.SCALARS: MAX_POINTS, ea.IMAGES: 1, ea.AUDIO: 1, ea.HISTOGRAMS: 1,
                ea.COMPRESSED_HISTOGRAMS: 1, ea.TENSORS: 1}
    with tempfile.TemporaryDirectory(prefix="tfevents-") as scratch, _quiet("tensorboard"):
        whole = _whole_records(path)
        source = path
        if whole < path.stat().st_size:   # read only the records that fit: a copy of them
            source = Path(scratch) / path.name
            with open(path, "rb") as original, open(source, "wb") as copy:
                copy.write(original.read(whole))
        accumulator = ea.EventAccumulator(str(source), size_guidance=guidance)
        accumulator.Reload()
        tags = accumulator.Tags()
        scalars = {tag: [(int(e.step), float(e.value)) for e in accumulator.Scalars(tag)]
                   for tag in tags.get(ea.SCALARS, [])}
    scalars = {tag: [p for p in points if math.isfinite(p[1])] for tag, points in scalars.items()}
    scalars = {tag: points for tag, points in scalars.items() if points}
    if not scalars:
        others = sorted(kind for kind, names in tags.items() if names and kind != ea.SCALARS and kind != "run_metadata")
        raise _Unusable(f"holds no scalar values (only {', '.join(others)})" if others else
                        "no scalar values could be read (not a TensorBoard event file, or damaged)")
    return scalars


def _whole_records(path: Path) -> int:
    """Bytes of the whole TFRecord frames (8-byte length, 4-byte crc, data, 4-byte crc) at the start of
    the file: a frame whose length runs past the end (cut short, or forged) ends the readable part."""
    size, offset = path.stat().st_size, 0
    with open(path, "rb") as handle:
        while offset + 12 <= size:
            handle.seek(offset)
            (length,) = struct.unpack("<Q", handle.read(8))
            end = offset + 12 + length + 4
            if end > size:
                break
            offset = end
    return offset


@contextlib.contextmanager
def _quiet(name: str):
    """tensorboard warns on stderr about odd files: those warnings belong in the report's note."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


# -- documents -------------------------------------------------------------------------------------------
def _list_documents(paths: list[Path], root: Path, found: Attachments) -> None:
    for index, path in enumerate(paths):
        name, kind = _inside(path, root), DOCUMENT_KINDS[path.suffix.lower()]
        try:
            size = path.stat().st_size
        except OSError as error:
            found.documents.append(Document(name, 0, kind, note=f"cannot be read ({error.strerror})"))
            continue
        document = Document(name, size, kind)
        if kind != "PDF":
            document.note = f"a {kind}: listed by name, no thumbnail (open it from the submission)"
        elif index >= MAX_DOCUMENTS:
            document.note = f"no thumbnail: only the first {MAX_DOCUMENTS} documents get one"
        else:
            try:
                document.thumbnail, document.note = pdf_thumbnail(path)
            except Exception as error:  # noqa: BLE001
                document.note = f"no thumbnail ({type(error).__name__}: {str(error)[:160]})"
        found.documents.append(document)


def pdf_thumbnail(path: Path) -> tuple[str | None, str]:
    """(base64 PNG of the first page, "") or (None, why not), by pdftoppm in a temporary folder."""
    tool = shutil.which("pdftoppm")
    if tool is None:
        return None, PDFTOPPM_MISSING
    size = path.stat().st_size
    if size > MAX_PDF_BYTES:
        return None, f"no thumbnail: {size / 2**20:.0f} MiB, above the {MAX_PDF_BYTES // 2**20} MiB bound"
    with open(path, "rb") as handle:
        if b"%PDF-" not in handle.read(1024):
            return None, "no thumbnail: the file is not a PDF (no %PDF- header in its first KiB)"
    with ToolJail(path, file_bytes=THUMBNAIL_MAX_BYTES, cpu_seconds=PDFTOPPM_TIMEOUT_S) as jail:
        messages = jail.scratch / "messages.txt"   # beside in/ and out/: the tool writes it only through its fd
        command = [tool, "-png", "-f", "1", "-l", "1", "-scale-to", str(THUMBNAIL_PIXELS), "-singlefile",
                   jail.input, f"{jail.out}/page"]
        try:
            with open(messages, "wb") as log:
                code = jail.run(command, stdout=log, stderr=log, timeout=PDFTOPPM_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return None, f"no thumbnail: pdftoppm needed more than {PDFTOPPM_TIMEOUT_S} s for the first page"
        except OSError as error:
            return None, f"no thumbnail: pdftoppm could not be started ({error.strerror})"
        data = jail.output("page.png", THUMBNAIL_MAX_BYTES) if code == 0 else None
        if data is None:
            said = _last_line(messages)
            return None, f"no thumbnail: pdftoppm could not render the first page ({said or f'exit {code}'})"
    if not data.startswith(PNG_SIGNATURE):
        return None, "no thumbnail: pdftoppm wrote no PNG"
    return base64.b64encode(data).decode("ascii"), ""


def _last_line(path: Path) -> str:
    """The last line a tool printed (read from the file's tail: a damaged PDF makes poppler talkative)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(max(0, path.stat().st_size - 4096))
            lines = [line.strip() for line in handle.read().decode("utf-8", "replace").splitlines()]
    except OSError:
        return ""
    lines = [line for line in lines if line]
    return lines[-1][:160] if lines else ""
