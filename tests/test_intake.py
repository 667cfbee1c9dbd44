"""Intake: which entries are submissions, safe unpacking of archives, and modules cut into cells."""
from __future__ import annotations

import ast
import json
import stat
import zipfile
from pathlib import Path

import nbformat
import pytest

from autograder import intake
from autograder.intake import NotASubmission, discover, load_notebook, module_to_notebook, prepare, submission_id


def write_notebook(path: Path, *sources: str, language: str = "python") -> Path:
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    notebook.metadata["kernelspec"] = {"name": language, "language": language, "display_name": language}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, str(path))
    return path


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def refused(entry: Path, scratch: Path) -> str:
    """The message of the NotASubmission that prepare + load_notebook raise for `entry`."""
    with pytest.raises(NotASubmission) as info:
        load_notebook(prepare(entry, scratch))
    return str(info.value)


@pytest.fixture
def scratch(tmp_path):
    folder = tmp_path / "scratch"
    folder.mkdir()
    return folder


# -- discovery and the kinds of entry ------------------------------------------------------------
def test_discover_lists_entries_in_order_and_skips_hidden_and_junk(tmp_path):
    subs = tmp_path / "subs"
    write_notebook(subs / "alice.ipynb", "x = 1")
    (subs / "bob.py").write_text("x = 1\n")
    write_notebook(subs / "carol" / "work.ipynb", "x = 1")
    make_zip(subs / "dave.zip", {"dave/sol.ipynb": b"{}"})
    (subs / ".DS_Store").write_text("junk")
    (subs / "__MACOSX").mkdir()
    (subs / ".ipynb_checkpoints").mkdir()
    assert [p.name for p in discover(subs)] == ["alice.ipynb", "bob.py", "carol", "dave.zip"]
    assert [submission_id(p) for p in discover(subs)] == ["alice", "bob", "carol", "dave"]


@pytest.mark.parametrize("name, expected", [
    ("s123.ipynb", "s123"), ("S123.IPYNB", "S123"), ("mod.py", "mod"), ("pack.zip", "pack"),
    ("old.tar.gz", "old"), ("folder", "folder"), ("dots.in.name.ipynb", "dots.in.name"),
])
def test_submission_id_strips_only_the_known_suffix(name, expected):
    assert submission_id(Path(name)) == expected


def test_notebook_entry(tmp_path, scratch):
    entry = write_notebook(tmp_path / "s1.ipynb", "x = 1", "y = 2")
    submission = prepare(entry, scratch)
    assert (submission.id, submission.main, submission.files) == ("s1", entry, [entry])
    notebook = load_notebook(submission)
    assert [c.source for c in notebook.cells] == ["x = 1", "y = 2"]


def test_notebook_outputs_are_dropped_before_running(tmp_path, scratch):
    entry = write_notebook(tmp_path / "s1.ipynb", "x = 1")
    data = json.loads(entry.read_text())
    data["cells"][0]["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "forged\n"}]
    data["cells"][0]["execution_count"] = 7
    entry.write_text(json.dumps(data))
    cell = load_notebook(prepare(entry, scratch)).cells[0]
    assert (cell.outputs, cell.execution_count) == ([], None)


def test_module_entry_becomes_cells(tmp_path, scratch):
    entry = tmp_path / "s2.py"
    entry.write_text("import os\n\nx = 1\n")
    notebook = load_notebook(prepare(entry, scratch))
    assert [c.source for c in notebook.cells] == ["import os", "x = 1"]
    assert notebook.metadata["kernelspec"]["language"] == "python"


def test_folder_entry_finds_its_notebook_and_the_files_beside_it(tmp_path, scratch):
    folder = tmp_path / "s3"
    main = write_notebook(folder / "work" / "solution.ipynb", "x = 1")
    (folder / "work" / "helpers.py").write_text("def f(): return 1\n")
    (folder / "work" / "data" / "table.csv").parent.mkdir()
    (folder / "work" / "data" / "table.csv").write_text("a,b\n")
    (folder / "README.txt").write_text("not beside the notebook\n")
    write_notebook(folder / "work" / ".ipynb_checkpoints" / "solution-checkpoint.ipynb", "old")
    submission = prepare(folder, scratch)
    assert submission.id == "s3"
    assert submission.main == main
    assert submission.base == main.parent
    assert sorted(p.name for p in submission.files) == ["helpers.py", "solution.ipynb", "table.csv"]


def test_folder_with_one_notebook_and_a_helper_module_runs_the_notebook(tmp_path, scratch):
    folder = tmp_path / "s4"
    main = write_notebook(folder / "a.ipynb", "x = 1")
    (folder / "helpers.py").write_text("y = 2\n")
    assert prepare(folder, scratch).main == main


def test_zip_entry_is_unpacked_into_scratch(tmp_path, scratch):
    notebook = write_notebook(tmp_path / "src.ipynb", "x = 1")
    entry = make_zip(tmp_path / "s5.zip", {"s5/solution.ipynb": notebook.read_bytes(), "s5/util.py": b"z = 3\n"})
    submission = prepare(entry, scratch)
    assert submission.id == "s5"
    assert submission.main == scratch / "unpacked" / "s5" / "solution.ipynb"
    assert sorted(p.name for p in submission.files) == ["solution.ipynb", "util.py"]
    assert [c.source for c in load_notebook(submission).cells] == ["x = 1"]


# -- hostile archives ----------------------------------------------------------------------------
def test_zip_with_parent_path_is_refused_and_writes_nothing_outside(tmp_path, scratch):
    entry = make_zip(tmp_path / "evil.zip", {"ok.py": b"x = 1\n", "../escaped.py": b"x = 2\n"})
    message = refused(entry, scratch)
    assert "escapes its folder" in message and "../escaped.py" in message
    assert not (scratch / "escaped.py").exists() and not (tmp_path / "escaped.py").exists()


def test_zip_with_absolute_path_is_refused(tmp_path, scratch):
    target = tmp_path / "absolute-target.py"
    entry = tmp_path / "evil.zip"
    with zipfile.ZipFile(entry, "w") as zf:
        zf.writestr("main.py", b"x = 1\n")
        zf.writestr(zipfile.ZipInfo(str(target)), b"x = 2\n")
    with zipfile.ZipFile(entry) as zf:
        assert str(target) in zf.namelist()  # the archive really holds an absolute name
    message = refused(entry, scratch)
    assert "escapes its folder" in message and str(target) in message
    assert not target.exists()


def test_zip_with_symlink_member_is_refused(tmp_path, scratch):
    entry = tmp_path / "link.zip"
    with zipfile.ZipFile(entry, "w") as zf:
        zf.writestr("main.py", b"x = 1\n")
        link = zipfile.ZipInfo("data")
        link.create_system = 3
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, str(tmp_path / "secret"))
    message = refused(entry, scratch)
    assert "symbolic link" in message and "'data'" in message
    assert not (scratch / "unpacked" / "data").is_symlink()


def test_zip_with_too_many_files_is_refused(tmp_path, scratch):
    entry = make_zip(tmp_path / "many.zip",
                     {"main.py": b"x = 1\n", **{f"f/{i}.txt": b"" for i in range(intake.MAX_FILES)}})
    message = refused(entry, scratch)
    assert f"more than {intake.MAX_FILES} files" in message
    assert not (scratch / "unpacked").exists()


def test_zip_bomb_is_refused_before_unpacking(tmp_path, scratch):
    entry = tmp_path / "bomb.zip"
    declared = 300 * 2**20
    assert declared > intake.MAX_UNPACKED_BYTES
    chunk = bytes(2**20)
    with zipfile.ZipFile(entry, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr("main.py", b"x = 1\n")
        with zf.open("zeros.bin", "w") as sink:
            for _ in range(declared // len(chunk)):
                sink.write(chunk)
    assert entry.stat().st_size < 5 * 2**20  # a small file that unpacks to 300 MiB
    with zipfile.ZipFile(entry) as zf:
        assert zf.getinfo("zeros.bin").file_size == declared
    message = refused(entry, scratch)
    assert "more than 256 MiB" in message
    assert not (scratch / "unpacked" / "zeros.bin").exists()


def test_corrupt_zip_is_refused(tmp_path, scratch):
    entry = tmp_path / "broken.zip"
    entry.write_bytes(b"PK\x03\x04 this is not really an archive")
    assert "cannot be read" in refused(entry, scratch)


# -- entries that are not one runnable Python notebook --------------------------------------------
def test_folder_with_two_notebooks_is_refused(tmp_path, scratch):
    folder = tmp_path / "two"
    write_notebook(folder / "a.ipynb", "x = 1")
    write_notebook(folder / "b.ipynb", "x = 2")
    message = refused(folder, scratch)
    assert "more than one notebook" in message and "a.ipynb" in message and "b.ipynb" in message


def test_folder_without_code_is_refused(tmp_path, scratch):
    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / "notes.txt").write_text("hello")
    assert "no notebook (.ipynb) or module (.py)" in refused(folder, scratch)


def test_truncated_notebook_is_refused(tmp_path, scratch):
    whole = write_notebook(tmp_path / "whole.ipynb", "x = 1").read_text()
    entry = tmp_path / "cut.ipynb"
    entry.write_text(whole[: len(whole) // 2])
    message = refused(entry, scratch)
    assert "cut.ipynb is not a valid notebook" in message and "JSON is broken" in message


def test_empty_notebook_file_is_refused(tmp_path, scratch):
    entry = tmp_path / "empty.ipynb"
    entry.write_bytes(b"")
    assert refused(entry, scratch) == "empty.ipynb is empty"


def test_json_that_is_not_a_notebook_is_refused(tmp_path, scratch):
    entry = tmp_path / "list.ipynb"
    entry.write_text("[1, 2, 3]")
    assert "list.ipynb is not a valid notebook" in refused(entry, scratch)


def test_text_file_is_refused(tmp_path, scratch):
    entry = tmp_path / "answers.txt"
    entry.write_text("x = 1\n")
    message = refused(entry, scratch)
    assert "'answers.txt' is not a notebook (.ipynb), a module (.py), a folder or a .zip" == message


def test_r_notebook_is_refused(tmp_path, scratch):
    entry = write_notebook(tmp_path / "r.ipynb", "x <- 1", language="R")
    assert refused(entry, scratch) == "r.ipynb is a notebook for R, not Python"


def test_non_utf8_module_is_refused(tmp_path, scratch):
    entry = tmp_path / "latin.py"
    entry.write_bytes("x = 'café'\n".encode("latin-1"))
    assert refused(entry, scratch) == "latin.py is not UTF-8 text"


def test_symlink_entry_is_refused(tmp_path, scratch):
    real = write_notebook(tmp_path / "real.ipynb", "x = 1")
    link = tmp_path / "link.ipynb"
    link.symlink_to(real)
    assert refused(link, scratch) == "the entry is a symbolic link"


# -- modules cut into cells -----------------------------------------------------------------------
def sources(text: str) -> list[str]:
    return [c.source for c in module_to_notebook(text).cells]


def test_module_with_cell_markers_splits_at_them():
    text = "import os\n# %%\nx = 1\ny = 2\n# %% [markdown]\n# Some prose\n# %%\nz = x + y\n"
    cells = module_to_notebook(text).cells
    assert [c.source for c in cells] == ["import os", "# %%\nx = 1\ny = 2", "Some prose", "# %%\nz = x + y"]
    assert [c.cell_type for c in cells] == ["code", "code", "markdown", "code"]  # jupytext markdown


def test_module_without_markers_splits_at_top_level_statements():
    text = ("import numpy as np\n"
            "\n"
            "def f(x):\n"
            "    y = x + 1\n"
            "\n"
            "    return y\n"
            "\n"
            "class A:\n"
            "    pass\n"
            "values = [f(i)\n"
            "          for i in range(3)]\n")
    assert sources(text) == ["import numpy as np",
                             "def f(x):\n    y = x + 1\n\n    return y",
                             "class A:\n    pass",
                             "values = [f(i)\n          for i in range(3)]"]


def test_decorated_function_keeps_its_decorators_in_its_cell():
    text = ("import functools\n"
            "@functools.lru_cache(maxsize=None)\n"
            "@staticmethod\n"
            "def g(x):\n"
            "    return x\n"
            "@dataclass\n"
            "class Point:\n"
            "    x: int = 0\n")
    cells = sources(text)
    assert cells == ["import functools",
                     "@functools.lru_cache(maxsize=None)\n@staticmethod\ndef g(x):\n    return x",
                     "@dataclass\nclass Point:\n    x: int = 0"]
    for cell in cells:
        ast.parse(cell)  # every cell is valid Python on its own


def test_module_with_syntax_error_becomes_one_cell():
    text = "x = 1\ndef broken(:\n    pass\ny = 2\n"
    assert sources(text) == [text.rstrip("\n")]


def test_empty_module_gives_no_cells():
    assert sources("\n\n") == []


@pytest.mark.parametrize("odd", ["\x0c", "\u2028"])
def test_module_with_form_feed_or_unicode_line_separator_splits_at_statements(odd):
    text = f"x = 1\ns = 'a{odd}b'\ndef f():\n    return 1\ny = f()\n"
    cells = sources(text)
    assert cells == ["x = 1", f"s = 'a{odd}b'", "def f():\n    return 1", "y = f()"]
    for cell in cells:
        ast.parse(cell)
