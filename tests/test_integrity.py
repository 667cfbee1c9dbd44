"""Academic integrity (autograder/integrity.py): disguised copies are flagged, independent work is not.

Fast: no kernels. The disguised copies are made here from corpus files (every student-defined name
renamed through `ast`, cells reordered as far as their dependencies allow), so they follow the corpus.
"""
from __future__ import annotations

import ast
import builtins
import io
import re
import shutil
import tempfile
from pathlib import Path

import nbformat
import pytest
from PIL import Image

from autograder import assignments
from autograder.integrity import (MIN_SHARED_TOKENS, SIMILARITY_THRESHOLD, check_entries, compare, starter_code,
                                  submission_code, write_integrity_page)
from autograder.intake import NotASubmission, load_notebook, prepare

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "tests" / "corpus"
ASSIGNMENTS = sorted(p.name for p in CORPUS.iterdir() if (p / "expected.toml").is_file())
from conftest import CHROMIUM, screenshot_of
WIDTH, HEIGHT = 1400, 1600


def correct_entries(assignment: str) -> list[Path]:
    return sorted(CORPUS.glob(f"{assignment}/correct_*"))


def notebook_cells(entry: Path) -> list[str]:
    with tempfile.TemporaryDirectory() as scratch:
        notebook = load_notebook(prepare(entry, Path(scratch)))
    return [cell.source for cell in notebook.cells if cell.cell_type == "code"]


# --- disguise: what a student hiding a copy does -------------------------------------------------

def defined_names(tree: ast.AST) -> set[str]:
    """Names the code itself binds (variables, functions, classes, parameters), imports excluded."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
    return names - {"self", "cls", "_"} - set(dir(builtins))


def imported_names(tree: ast.AST) -> set[str]:
    return {(alias.asname or alias.name).split(".")[0]
            for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom)) for alias in node.names}


def parse(source: str) -> ast.Module | None:
    try:
        return ast.parse(source)
    except SyntaxError:  # a cell with IPython magics: left as it is
        return None


def reordered(cells: list[str]) -> list[int]:
    """A valid order of the cells, as far from the original as their dependencies allow.

    Cell j depends on an earlier cell i when one binds a name the other mentions; among the cells
    whose dependencies are placed, the latest one in the original goes first.
    """
    trees = [parse(c) for c in cells]
    binds = [(defined_names(t) | imported_names(t)) if t else set() for t in trees]
    mentions = [{n.id for n in ast.walk(t) if isinstance(n, ast.Name)} | binds[i] if t else set()
                for i, t in enumerate(trees)]
    before = {j: {i for i in range(j) if trees[i] is None or trees[j] is None
                  or binds[i] & mentions[j] or binds[j] & mentions[i]} for j in range(len(cells))}
    order: list[int] = []
    while len(order) < len(cells):
        ready = [j for j in range(len(cells)) if j not in order and before[j] <= set(order)]
        order.append(max(ready))
    return order


def renamed(source: str, mapping: dict[str, str]) -> str:
    """`source` with the names of `mapping` replaced where ast binds or reads them; layout kept."""
    tree = parse(source)
    if tree is None:
        return source
    lines = [line.encode() for line in io.StringIO(source, newline="").readlines()]  # ast counts bytes
    spots = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in mapping:
            spots.append((node.lineno, node.col_offset, node.id))
        elif isinstance(node, ast.arg) and node.arg in mapping:
            spots.append((node.lineno, node.col_offset, node.arg))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name in mapping:
            keyword = re.compile(rb"(async\s+)?(def|class)\s+").match(lines[node.lineno - 1], node.col_offset)
            spots.append((node.lineno, keyword.end(), node.name))
    for lineno, column, name in sorted(spots, reverse=True):  # right to left: columns stay valid
        line, old = lines[lineno - 1], name.encode()
        assert line[column:column + len(old)] == old, (line, column, name)
        lines[lineno - 1] = line[:column] + mapping[name].encode() + line[column + len(old):]
    return b"".join(lines).decode()


def disguised_copy(entry: Path, target: Path) -> tuple[Path, dict[str, str], list[int]]:
    """A notebook with `entry`'s code: every student-defined name renamed, cells reordered."""
    cells = notebook_cells(entry)
    trees = [parse(c) for c in cells]
    ours = set().union(*(defined_names(t) for t in trees if t)) - \
        set().union(*(imported_names(t) for t in trees if t))
    mapping = {name: f"v{index}_{name[::-1].lower()}" for index, name in enumerate(sorted(ours))}
    order = reordered(cells)
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(renamed(cells[i], mapping)) for i in order])
    notebook.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Python 3"}
    nbformat.write(notebook, str(target))
    return target, mapping, order


def first_notebook(assignment: str) -> Path:
    return next(e for e in correct_entries(assignment) if e.suffix == ".ipynb")


# --- the tests -----------------------------------------------------------------------------------

@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_disguised_copy_is_flagged_against_its_original(assignment, tmp_path):
    original = first_notebook(assignment)
    copy, mapping, order = disguised_copy(original, tmp_path / "copy.ipynb")
    copied = submission_code(copy)
    # The disguise is real: none of the student's own names is left, and cells moved.
    assert len(mapping) >= 10
    assert order != sorted(order)
    assert not defined_names(ast.parse(copied)) & set(mapping)

    (pair,) = compare({"original": submission_code(original), "copy": copied}, starter_code(assignment))
    assert pair.flagged, pair
    # Nearly all of the original is found in the copy. The copy's own share is lower (0.69-0.98 in
    # the corpus): k-grams across the seams of moved cells are found in neither original nor template.
    assert pair.similarity >= 0.9 and pair.shared_tokens >= 2 * MIN_SHARED_TOKENS, pair


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_independent_correct_submissions_are_not_flagged(assignment):
    entries = correct_entries(assignment)
    assert len(entries) >= 3, "the corpus holds several independent correct submissions"
    result = check_entries(entries, assignment)
    assert not result.skipped
    assert len(result.pairs) == len(entries) * (len(entries) - 1) // 2
    assert not result.flagged, [(p.a, p.b, round(p.similarity, 3)) for p in result.flagged]
    # They share some code (same libraries, same task), just far less than the threshold.
    assert 0 < result.pairs[0].similarity < SIMILARITY_THRESHOLD - 0.1


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_the_template_alone_is_not_flagged_against_any_submission(assignment, tmp_path):
    template = tmp_path / "template_only.ipynb"
    shutil.copy(REPO / "templates" / f"{assignment}.ipynb", template)
    entries = sorted(CORPUS.glob(f"{assignment}/*"))
    result = check_entries([template, *entries], assignment)
    against_template = [p for p in result.pairs if "template_only" in (p.a, p.b)]
    assert len(against_template) == len(result.codes) - 1 >= 10
    assert not [p for p in against_template if p.flagged]
    # Not by luck: all of its code is starter code, which counts for nothing ...
    assert all(p.shared_tokens == 0 for p in against_template)
    # ... and without removing the starter code, a filled-in template would be flagged against it.
    unfiltered = max((compare({"template_only": submission_code(template), e.name: submission_code(e)})[0]
                      for e in correct_entries(assignment)), key=lambda p: p.similarity)
    assert unfiltered.flagged, unfiltered


def test_a_stock_snippet_alone_is_not_flagged(tmp_path):
    # Two nearly empty submissions: the template plus the same usual normalisation line.
    starter = starter_code("fruits")
    snippet = ("normalize = transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])\n"
               "resize = transforms.Resize(256)\n")
    (pair,) = compare({"a": starter + "\n" + snippet, "b": snippet + "\n" + starter}, starter)
    assert pair.similarity >= SIMILARITY_THRESHOLD  # all of their own code is shared ...
    assert 0 < pair.shared_tokens < MIN_SHARED_TOKENS and not pair.flagged  # ... but it is too little to tell


def test_code_of_every_kind_of_entry(tmp_path):
    fruits = CORPUS / "fruits"
    module = submission_code(fruits / "correct_module_v2.py")
    assert "def " in module
    # A folder: the notebook's cells, then the helper module it imports.
    folder = submission_code(fruits / "correct_folder")
    helpers = (fruits / "correct_folder" / "helpers.py").read_text()
    assert folder.endswith(helpers) and "# helpers.py" in folder
    zipped = submission_code(fruits / "correct_zipped.zip")
    assert "import" in zipped
    (tmp_path / "notes.txt").write_text("not code")
    with pytest.raises(NotASubmission):
        submission_code(tmp_path / "notes.txt")
    markdown_only = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# nothing")])
    nbformat.write(markdown_only, str(tmp_path / "empty.ipynb"))
    with pytest.raises(NotASubmission, match="no code"):
        submission_code(tmp_path / "empty.ipynb")


def test_highlight_starts_where_the_shared_class_does():
    # copydetect 0.5.0 maps a class name back to the wrong place in the code; integrity.py repairs it.
    body = ("class Model(Base):\n    def forward(self, a, b):\n        total = a * 2 + b * 3 - a / (b + 1)\n"
            "        return [total, total ** 2, total ** 3, a - b]\n")
    codes = {"a": "print('a long and different first line', 123456789 + 987654321)\n" + body,
             "b": "values = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\n" + body}
    # The starter's k-grams cover `class` up to the name, so the shared passage starts at the name.
    starter = "class Model(Base):\n    def forward(self, a, b):\n        total = a * 7\n"
    (pair,) = compare(codes, starter)
    assert pair.shared_tokens > 0
    assert int(pair.slices_a[0][0]) == codes["a"].index("Model")
    assert int(pair.slices_b[0][0]) == codes["b"].index("Model")


@pytest.fixture(scope="module")
def batch_folder(tmp_path_factory) -> Path:
    """A small batch: an original, its disguised copy, two independent solutions, and two non-submissions."""
    folder = tmp_path_factory.mktemp("submissions")
    shutil.copy(CORPUS / "fruits" / "correct_functional.ipynb", folder / "alice.ipynb")
    disguised_copy(CORPUS / "fruits" / "correct_functional.ipynb", folder / "mallory.ipynb")
    shutil.copy(CORPUS / "fruits" / "correct_zipped.zip", folder / "bob.zip")
    shutil.copytree(CORPUS / "fruits" / "correct_folder", folder / "carol")
    (folder / "notes.txt").write_text("my notes")
    (folder / "broken.ipynb").write_text("{not json")
    return folder


@pytest.fixture(scope="module")
def batch_result(batch_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    result = write_integrity_page(out / "integrity.html", assignments.load("fruits"), sorted(batch_folder.iterdir()))
    return result, out


@pytest.fixture(scope="module")
def page(batch_result) -> Path:
    return batch_result[1] / "integrity.html"


def test_batch_flags_only_the_copy_and_lists_what_it_skipped(batch_result):
    result, out = batch_result
    assert sorted(result.codes) == ["alice", "bob", "carol", "mallory"]
    assert [(p.a, p.b) for p in result.flagged] == [("alice", "mallory")]
    assert set(result.skipped) == {"notes.txt", "broken.ipynb"}
    assert "not a valid notebook" in result.skipped["broken.ipynb"]
    assert sorted(p.name for p in out.iterdir()) == ["integrity.html"], "it writes nothing else: no grade"


def test_page_shows_the_flagged_pair_side_by_side_with_highlights(page):
    text = page.read_text(encoding="utf-8")
    flagged = re.search(r'<table id="flagged">(.*?)</table>', text, re.S).group(1)
    assert "alice ↔ mallory" in flagged and "bob" not in flagged and "carol" not in flagged
    section = re.search(r'<section class="pair" id="pair-1">(.*?)</section>', text, re.S).group(1)
    codes = re.findall(r'<pre class="code">(.*?)</pre>', section, re.S)
    assert len(codes) == 2
    assert all(code.count('<mark class="shared">') >= 3 for code in codes)
    plain = [re.sub(r"<[^>]+>", "", code) for code in codes]
    assert "def extract(" in plain[0] and "def extract(" not in plain[1]  # mallory renamed it
    assert f"{round(SIMILARITY_THRESHOLD * 100)} %" in text and f"{MIN_SHARED_TOKENS} tokens" in text
    skipped = re.search(r'<table id="skipped">(.*?)</table>', text, re.S).group(1)
    assert "notes.txt" in skipped and "broken.ipynb" in skipped


def test_student_code_is_escaped_not_markup(tmp_path):
    cells = notebook_cells(CORPUS / "fruits" / "correct_functional.ipynb")
    hostile = "payload = '</pre><script>alert(1)</script>'"
    for name in ("eve", "trudy"):
        notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in [*cells, hostile]])
        nbformat.write(notebook, str(tmp_path / f"{name}.ipynb"))
    result = write_integrity_page(tmp_path / "integrity.html", assignments.load("fruits"),
                                  [tmp_path / "eve.ipynb", tmp_path / "trudy.ipynb"])
    assert [(p.a, p.b) for p in result.flagged] == [("eve", "trudy")]
    text = (tmp_path / "integrity.html").read_text(encoding="utf-8")
    assert "<script>" not in text and text.count("&lt;script&gt;alert(1)&lt;/script&gt;") == 2


@pytest.fixture(scope="module")
def screenshot(page, tmp_path_factory) -> Path:
    if CHROMIUM is None:
        pytest.skip("chromium is not installed: no screenshot of integrity.html")
    return screenshot_of(page, tmp_path_factory.mktemp("shot") / "shot.png", WIDTH, HEIGHT)


def test_screenshot_of_integrity_page(screenshot, page):
    assert screenshot.is_file(), "chromium wrote no screenshot"
    with Image.open(screenshot) as image:
        assert image.size == (WIDTH, HEIGHT)
        rgb = image.convert("RGB")
    colours = rgb.getcolors(maxcolors=WIDTH * HEIGHT)
    assert len(colours) > 100, f"only {len(colours)} colours: a blank or broken page"
    white = max((count for count, colour in colours if colour == (255, 255, 255)), default=0)
    assert white < 0.97 * WIDTH * HEIGHT
    # The shared passages are drawn in the highlight's amber (#ffd54f), in both columns.
    amber = [(x, y) for y in range(0, HEIGHT, 2) for x in range(0, WIDTH, 2) if rgb.getpixel((x, y)) == (255, 213, 79)]
    assert len(amber) > 2000, f"{len(amber)} highlighted pixels: the shared code is not highlighted"
    assert min(x for x, _ in amber) < WIDTH // 2 < max(x for x, _ in amber), "highlights in one column only"
    text = page.read_text(encoding="utf-8")
    assert "alice" in text and "mallory" in text
