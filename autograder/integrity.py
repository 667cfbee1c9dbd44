"""Academic integrity: every pair of a batch's submissions compared for shared code (integrity.html).

The comparison is copydetect's (MOSS-style winnowing, the algorithm of Schleimer, Wilkerson and Aiken,
SIGMOD 2003): each submission's code is tokenised by pygments with every name (variables,
functions, attributes, classes) turned into one letter and strings, comments and layout dropped, so
renaming variables or reformatting changes nothing; the fingerprints are the hashes of its k-grams
(k = 25 filtered characters, copydetect's default noise and guarantee thresholds, hence a window of
1: every k-gram is kept), and fingerprints do not depend on where in the file a passage stands, so
reordering cells changes little. Every k-gram of the template's own starter code
(`templates/<assignment>.ipynb`, its code cells) is removed first as boilerplate, exactly as
copydetect's `boilerplate_dirs` does, so filling in the same template is not similarity.

The code of a submission is the code cells of its notebook (a module is cut into cells by intake),
followed by the other `.py` files of a folder or archive entry: helpers a notebook imports are part of
what the student wrote. Entries that are not submissions are listed as not compared.

For a pair (A, B) copydetect gives two figures: the share of A's code (its fingerprinted tokens, after
the template's are removed) found in B, and the share of B's found in A. A pair is flagged when
**the larger of the two is at least 50 %** (SIMILARITY_THRESHOLD) **and the shared code is at least 100
tokens** (MIN_SHARED_TOKENS; copydetect counts characters of the filtered code, where a name is one
character: 100 is four to six ordinary lines). Why these numbers, measured on
`tests/corpus/<assignment>/`:

- a copy disguised by renaming every student-defined name and reordering the cells (tests/
  test_integrity.py makes one per assignment) keeps 0.92-0.99 of the original's code; the copy's own
  share is lower (0.69-0.98), since k-grams across the seams of moved cells are in neither the
  original nor the template;
- independent correct submissions written in different idioms score at most 0.33 (catsdogs: the
  same PyTorch calls in the same order are unavoidable), 0.29 (scene15), 0.28 (fruits), 0.26
  (wikiart), 0.21 (inception), 0.16 (saliency): 0.5 leaves a margin of 0.17 above the worst. Over
  all corpus pairs (bug variants included) nothing lies between 0.38 (a bug module against a correct
  module) and 0.58 (two bug variants of one notebook, flagged as they should be);
- the larger share, not the smaller, so that a student who copies a whole solution and pads it
  with code of their own is still flagged (copydetect's own report flags on either file's share);
- the minimum of shared tokens keeps a nearly empty submission, whose few own lines are a stock
  snippet (ImageNet's normalisation constants, a `Compose` of the usual transforms), from being
  flagged against everyone at 100 %.

The page only flags: a flagged pair is a reason for a TA to read both codes, not a verdict, and
nothing here reads or writes a grade.
"""
from __future__ import annotations

import io
import itertools
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import copydetect
import nbformat
import numpy as np
from copydetect import CodeFingerprint, compare_files, defaults
from copydetect.utils import highlight_overlap
from markupsafe import Markup

from .assignments import REPO, Assignment
from .intake import NotASubmission, load_notebook, prepare, submission_id
from .reports.html import _ENV

SIMILARITY_THRESHOLD = 0.5
MIN_SHARED_TOKENS = 100
NOISE_THRESHOLD = defaults.NOISE_THRESHOLD          # k: shorter matches are never seen
GUARANTEE_THRESHOLD = defaults.GUARANTEE_THRESHOLD  # matches this long are always seen
WINDOW = GUARANTEE_THRESHOLD - NOISE_THRESHOLD + 1
MAX_HELPER_BYTES = 1024 * 1024   # a bigger .py beside the notebook is a vendored library, not the student's
CLOSEST_SHOWN = 5                # pairs under the threshold listed, so a TA sees the margin


@dataclass
class Pair:
    a: str
    b: str
    similarity_a: float          # share of a's code found in b
    similarity_b: float
    shared_tokens: int
    slices_a: np.ndarray = field(repr=False)
    slices_b: np.ndarray = field(repr=False)

    @property
    def similarity(self) -> float:
        return max(self.similarity_a, self.similarity_b)

    @property
    def flagged(self) -> bool:
        return self.similarity >= SIMILARITY_THRESHOLD and self.shared_tokens >= MIN_SHARED_TOKENS


@dataclass
class Integrity:
    codes: dict[str, str]        # id -> the code compared
    pairs: list[Pair]            # every pair, most similar first
    skipped: dict[str, str]      # entry name -> why it was not compared

    @property
    def flagged(self) -> list[Pair]:
        return [p for p in self.pairs if p.flagged]


def cells_code(notebook) -> str:
    return "\n\n".join(cell.source for cell in notebook.cells if cell.cell_type == "code")


def submission_code(entry: Path, choice=None) -> str:
    """The code a student wrote in `entry`: notebook code cells, then the entry's other modules.
    `choice` tells intake which notebook is this assignment's when the entry holds several."""
    with tempfile.TemporaryDirectory(prefix="integrity-") as scratch:
        submission = prepare(Path(entry), Path(scratch), choice)
        parts = [cells_code(load_notebook(submission))]
        for path in sorted(submission.files):
            if path.suffix.lower() == ".py" and path != submission.main and path.stat().st_size <= MAX_HELPER_BYTES:
                parts.append(f"# {path.relative_to(submission.base)}\n" +
                             path.read_text(encoding="utf-8", errors="replace"))
    code = "\n\n".join(parts)
    if not code.strip():
        raise NotASubmission("it holds no code")
    return code


def starter_code(assignment: str) -> str:
    """The code cells of the assignment's template notebook ('' when it has none)."""
    path = REPO / "templates" / f"{assignment}.ipynb"
    return cells_code(nbformat.read(str(path), as_version=4)) if path.is_file() else ""


def _fingerprint(name: str, code: str, boilerplate: np.ndarray) -> CodeFingerprint:
    fingerprint = CodeFingerprint(f"{name}.py", NOISE_THRESHOLD, WINDOW, boilerplate,
                                  language="python", fp=io.StringIO(code))
    _repair_class_offsets(fingerprint)
    return fingerprint


def _repair_class_offsets(fingerprint: CodeFingerprint) -> None:
    """Put right the offset copydetect 0.5.0 records at a class name (highlighting only).

    `offsets` maps positions in the filtered code back to the code: column 1 is the running count
    of characters removed. At a class name (filtered to "O" after `class`) utils.filter_code records
    len(name) - 1 instead of that count, so a shared passage starting at a class is highlighted
    from far up the file. The next entry holds the right count plus those len(name) - 1.
    """
    offsets, filtered = fingerprint.offsets, fingerprint.filtered_code
    for i in range(1, len(offsets) - 1):
        at = int(offsets[i, 0])
        if filtered[at] == "O" and filtered[:at].endswith("class") and offsets[i - 1, 0] != at:
            offsets[i, 1] = offsets[i + 1, 1] - offsets[i, 1]


def compare(codes: dict[str, str], starter: str = "") -> list[Pair]:
    """Every pair of `codes` (id -> code) compared by copydetect, the starter code removed; most similar first."""
    # As copydetect's CopyDetector does for boilerplate files: every k-gram (window 1) of the template.
    boilerplate = np.unique(np.array(list(_fingerprint("template", starter, np.array([])).hashes))) \
        if starter.strip() else np.array([])
    prints = {name: _fingerprint(name, code, boilerplate) for name, code in codes.items()}
    pairs = []
    for a, b in itertools.combinations(sorted(prints), 2):
        shared, (similarity_a, similarity_b), (slices_a, slices_b) = compare_files(prints[a], prints[b])
        pairs.append(Pair(a, b, float(similarity_a), float(similarity_b), int(shared), slices_a, slices_b))
    pairs.sort(key=lambda p: (-p.similarity, -p.shared_tokens, p.a, p.b))
    return pairs


def check_entries(entries: list[Path], assignment: str, choice=None) -> Integrity:
    """Read every entry's code (skipping those that are not submissions) and compare every pair."""
    codes, skipped = {}, {}
    for entry in entries:
        name = submission_id(Path(entry))
        if name in codes:  # `a.ipynb` beside `a.py`: keep both, under their file names
            name = Path(entry).name
        try:
            codes[name] = submission_code(Path(entry), choice)
        except NotASubmission as error:
            skipped[Path(entry).name] = str(error)
        except Exception as error:  # noqa: BLE001 - one unreadable entry must not hide the others' pairs
            skipped[Path(entry).name] = f"could not be read ({type(error).__name__}: {str(error)[:200]})"
    return Integrity(codes, compare(codes, starter_code(assignment)), skipped)


def _highlighted(code: str, slices: np.ndarray) -> Markup:
    # copydetect escapes the code itself (escape_html=True); only its <mark> tags are markup.
    text, _ = highlight_overlap(code, slices, '<mark class="shared">', "</mark>", escape_html=True)
    return Markup(text)


def render_page(assignment: Assignment, result: Integrity) -> str:
    flagged = [{"pair": p, "code_a": _highlighted(result.codes[p.a], p.slices_a),
                "code_b": _highlighted(result.codes[p.b], p.slices_b)} for p in result.flagged]
    closest = [p for p in result.pairs if not p.flagged][:CLOSEST_SHOWN]
    return _ENV.get_template("integrity.html.j2").render(
        assignment=assignment, compared=len(result.codes), pair_count=len(result.pairs), flagged=flagged,
        closest=closest, skipped=result.skipped, threshold=SIMILARITY_THRESHOLD, min_shared=MIN_SHARED_TOKENS,
        k=NOISE_THRESHOLD, version=copydetect.__version__, has_starter=bool(starter_code(assignment.name).strip()))


def write_integrity_page(path: Path, assignment: Assignment, entries: list[Path]) -> Integrity:
    """Compare the batch's entries and write integrity.html; grades are neither read nor changed."""
    from .pipeline import notebook_choice   # the grading's own rule for archives holding two parts
    result = check_entries(entries, assignment.name, notebook_choice(assignment))
    Path(path).write_text(render_page(assignment, result), encoding="utf-8")
    return result
