"""Intake: which entries are submissions, safe unpacking of archives, and modules cut into cells."""
from __future__ import annotations

import ast
import binascii
import gzip
import io
import json
import shutil
import signal
import stat
import struct
import sys
import tarfile
import zipfile
import zlib
from pathlib import Path

import nbformat
import pytest

from autograder import assignments, intake
from autograder.intake import NotASubmission, discover, load_notebook, module_to_notebook, prepare, submission_id
from autograder.intake import NotebookChoice, contract_names, defined_names
from autograder.late import CourseRuleError, load_course
from autograder.pipeline import notebook_choice


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
    ("cs587_bob_assignment4.rar", "cs587_bob_assignment4"), ("t.tgz", "t"), ("t.tar", "t"), ("t.gz", "t"),
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
    assert message == ("'answers.txt' is not a notebook (.ipynb), a module (.py), a folder or an archive "
                       "(.zip, .tar.gz, .tgz, .rar)")


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


# -- student ids from file names ------------------------------------------------------------------
HANDOUT_PATTERN = r"cs587_(?P<id>[^_]+)_assignment4"


@pytest.mark.parametrize("name, expected", [
    ("cs587_jdoe_assignment4.zip", "jdoe"),
    ("cs587_jdoe_assignment4.tar.gz", "jdoe"),
    ("cs587_jdoe_assignment4 (1).rar", "jdoe"),   # the LMS's second copy still names its student
    ("jdoe_assignment4.zip", None),               # not the handout's naming: no id, never a guess
])
def test_student_id_comes_from_the_pattern_group(name, expected):
    assert intake.student_id(Path(name), intake.compile_id_pattern(HANDOUT_PATTERN)) == expected


def test_student_id_without_a_pattern_is_the_name_without_extension():
    assert intake.student_id(Path("cs587_jdoe_assignment4.tgz"), None) == "cs587_jdoe_assignment4"


@pytest.mark.parametrize("pattern, complaint", [
    (r"cs587_([^_]+)_assignment4", "no group named id"),
    (r"cs587_(?P<id>[^_+_assignment4", "not a valid regular expression"),
])
def test_a_bad_id_pattern_is_refused_with_a_reason(pattern, complaint):
    with pytest.raises(ValueError, match=complaint):
        intake.compile_id_pattern(pattern)


# -- tar archives ---------------------------------------------------------------------------------
def tar_member(name: str, data: bytes = b"", **fields) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for key, value in fields.items():
        setattr(info, key, value)
    return info, data


def make_tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes]], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as tf:
        for info, data in members:
            tf.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return path


def test_tar_gz_entry_is_unpacked_into_scratch(tmp_path, scratch):
    notebook = write_notebook(tmp_path / "src.ipynb", "x = 1").read_bytes()
    entry = make_tar(tmp_path / "cs587_jdoe_assignment4.tar.gz",
                     [tar_member("work", type=tarfile.DIRTYPE, mode=0o755),
                      tar_member("work/solution.ipynb", notebook), tar_member("work/util.py", b"z = 3\n")])
    submission = prepare(entry, scratch)
    assert submission.id == "cs587_jdoe_assignment4"
    assert submission.main == scratch / "unpacked" / "work" / "solution.ipynb"
    assert sorted(p.name for p in submission.files) == ["solution.ipynb", "util.py"]
    assert (scratch / "unpacked" / "work" / "util.py").read_bytes() == b"z = 3\n"
    assert [c.source for c in load_notebook(submission).cells] == ["x = 1"]


@pytest.mark.parametrize("name", ["entry.tgz", "entry.tar", "entry.gz"])
def test_other_tar_names_are_unpacked_too(tmp_path, scratch, name):
    mode = "w" if name.endswith(".tar") else "w:gz"
    entry = make_tar(tmp_path / name, [tar_member("main.py", b"x = 1\n")], mode)
    assert prepare(entry, scratch).main.read_bytes() == b"x = 1\n"


def test_tgz_with_parent_path_is_refused_and_writes_nothing_outside(tmp_path, scratch):
    entry = make_tar(tmp_path / "evil.tgz", [tar_member("main.py", b"x = 1\n"),
                                            tar_member("../escaped.py", b"x = 2\n")])
    message = refused(entry, scratch)
    assert "escapes its folder" in message and "'../escaped.py'" in message
    assert not (scratch / "escaped.py").exists() and not (tmp_path / "escaped.py").exists()
    assert not (scratch / "unpacked" / "main.py").exists()  # checked before anything is written


def test_tar_with_absolute_path_is_refused(tmp_path, scratch):
    target = tmp_path / "absolute-target.py"
    entry = make_tar(tmp_path / "evil.tar.gz", [tar_member("main.py", b"x = 1\n"), tar_member(str(target), b"2")])
    assert "escapes its folder" in refused(entry, scratch)
    assert not target.exists()


def test_tar_with_symlink_out_is_refused(tmp_path, scratch):
    secret = tmp_path / "secret.txt"
    secret.write_text("the reference solution")
    entry = make_tar(tmp_path / "link.tar.gz", [tar_member("main.py", b"x = 1\n"),
                                               tar_member("data", type=tarfile.SYMTYPE, linkname=str(secret))])
    message = refused(entry, scratch)
    assert "symbolic link" in message and "'data'" in message
    assert not (scratch / "unpacked" / "data").is_symlink()


def test_tar_with_hard_link_is_refused(tmp_path, scratch):
    entry = make_tar(tmp_path / "hard.tgz", [tar_member("main.py", b"x = 1\n"),
                                            tar_member("copy.py", type=tarfile.LNKTYPE, linkname="/etc/passwd")])
    assert "hard link: 'copy.py'" in refused(entry, scratch)


def test_tar_with_a_device_is_refused(tmp_path, scratch):
    entry = make_tar(tmp_path / "dev.tgz", [tar_member("main.py", b"x = 1\n"),
                                           tar_member("null", type=tarfile.CHRTYPE, devmajor=1, devminor=3)])
    assert "special file" in refused(entry, scratch)


def test_tar_bomb_is_refused_from_its_header_alone(tmp_path, scratch):
    # A header that claims 300 MiB, and no data at all: the header must be enough to refuse it.
    main, data = tar_member("main.py", b"x = 1\n")
    bomb, _ = tar_member("zeros.bin")
    bomb.size = 300 * 2**20
    assert bomb.size > intake.MAX_UNPACKED_BYTES
    raw = main.tobuf() + data.ljust(512, b"\0") + bomb.tobuf()
    entry = tmp_path / "bomb.tar.gz"
    entry.write_bytes(gzip.compress(raw))
    assert entry.stat().st_size < 1024
    message = refused(entry, scratch)
    assert "more than 256 MiB" in message
    assert not (scratch / "unpacked").exists()


def test_tar_with_too_many_files_is_refused(tmp_path, scratch):
    entry = make_tar(tmp_path / "many.tar.gz",
                     [tar_member("main.py", b"x = 1\n")] + [tar_member(f"f/{i}.txt") for i in range(intake.MAX_FILES)])
    assert f"more than {intake.MAX_FILES} files" in refused(entry, scratch)
    assert not (scratch / "unpacked").exists()


def test_corrupt_tar_gz_is_refused(tmp_path, scratch):
    entry = tmp_path / "broken.tar.gz"
    entry.write_bytes(gzip.compress(b"x = 1\n" * 200)[:60])
    assert "cannot be read" in refused(entry, scratch)


def test_gz_of_a_lone_notebook_is_refused_as_not_a_tar(tmp_path, scratch):
    entry = tmp_path / "cs587_jdoe_assignment4.gz"
    entry.write_bytes(gzip.compress(write_notebook(tmp_path / "n.ipynb", "x = 1").read_bytes()))
    assert "cannot be read as a tar archive" in refused(entry, scratch)


def test_archive_is_unpacked_by_its_content_not_its_name(tmp_path, scratch):
    entry = make_zip(tmp_path / "cs587_jdoe_assignment4.rar", {"main.py": b"x = 1\n"})  # a zip, renamed
    assert prepare(entry, scratch).main.read_bytes() == b"x = 1\n"


# -- rar archives (Debian's unar) ---------------------------------------------------------------------
needs_unar = pytest.mark.skipif(shutil.which("unar") is None or shutil.which("lsar") is None,
                                reason="unar is not installed (setup.sh installs it: apt-get install unar)")


def rar_block(kind: int, flags: int, body: bytes, data: bytes = b"") -> bytes:
    """A RAR 1.5-4.x block: CRC (low 16 bits of CRC-32 from the type byte on), type, flags, size, body."""
    head = struct.pack("<BHH", kind, flags, 7 + len(body)) + body
    return struct.pack("<H", zlib.crc32(head) & 0xFFFF) + head + data


def make_rar(path: Path, members: dict[str, bytes], *, modes: dict[str, int] | None = None,
             declared_sizes: dict[str, int] | None = None, flags: int = 0) -> Path:
    """A RAR 4 archive of stored (uncompressed) members, byte by byte: no free tool writes RAR.

    RAR stores names with backslashes; file-header flag 0x8000 says a data area follows. `modes`:
    unix modes (a symbolic link's data is its target); `declared_sizes`: an unpacked size that lies.
    """
    modes, declared_sizes = modes or {}, declared_sizes or {}
    blob = b"Rar!\x1a\x07\x00" + rar_block(0x73, 0, bytes(6))
    for name, data in members.items():
        encoded = name.replace("/", "\\").encode()
        body = struct.pack("<IIBIIBBHI", len(data), declared_sizes.get(name, len(data)), 3, zlib.crc32(data),
                           0x5A210000, 20, 0x30, len(encoded), modes.get(name, stat.S_IFREG | 0o644)) + encoded
        blob += rar_block(0x74, 0x8000 | flags, body, data)
    path.write_bytes(blob + rar_block(0x7B, 0x4000, b""))
    return path


# libarchive's test_read_format_rar.rar (BSD licence), made by the RAR tool: test.txt, a symbolic
# link testlink -> test.txt, testdir/test.txt and two folders.
LIBARCHIVE_RAR_UU = r"""M4F%R(1H'`,^0<P``#0````````"$4G0@D#(`%````!0````#0J+(OK=VVCX4
M,`@`I($``'1E<W0N='AT@`BW=MH^MW;:/G1E<W0@=&5X="!D;V-U;65N=`T*
MG2]T()`R``@````(`````WM$R;;13-@^%#`(`/^A``!T97-T;&EN:\`(T4S8
M>E!?VCYT97-T+G1X=,W@=""0.@`4````%`````-"HLB^8W?:/A0P$`"D@0``
M=&5S=&1I<EQT97-T+G1X=,#,8W?:/F-WVCYT97-T('1E>'0@9&]C=6UE;G0-
M"J'(=."0,0````````````,`````8W?:/A0P!P#M00``=&5S=&1I<L#,8W?:
M/F1WVC[FYW3@D#8````````````#`````)VKU3X4,`P`[4$``'1E<W1E;7!T
5>61I<H#,G:O5/L5=VC[$/7L`0`<`"""


@needs_unar
def test_rar_entry_is_unpacked_with_unar(tmp_path, scratch):
    notebook = write_notebook(tmp_path / "src.ipynb", "x = 1").read_bytes()
    entry = make_rar(tmp_path / "cs587_jdoe_assignment4.rar",
                     {"work/solution.ipynb": notebook, "work/util.py": b"z = 3\n"})
    submission = prepare(entry, scratch)
    assert submission.id == "cs587_jdoe_assignment4"
    assert submission.main == scratch / "unpacked" / "work" / "solution.ipynb"
    assert sorted(p.name for p in submission.files) == ["solution.ipynb", "util.py"]
    assert (scratch / "unpacked" / "work" / "util.py").read_bytes() == b"z = 3\n"
    assert [c.source for c in load_notebook(submission).cells] == ["x = 1"]


@needs_unar
def test_rar_made_by_the_rar_tool_is_read_and_its_link_refused(tmp_path, scratch):
    entry = tmp_path / "libarchive.rar"
    entry.write_bytes(b"".join(binascii.a2b_uu(line) for line in LIBARCHIVE_RAR_UU.splitlines()))
    assert refused(entry, scratch) == "the archive holds a symbolic link: 'testlink'"
    assert not (scratch / "unpacked").exists()  # refused from unar's listing, before unpacking


@needs_unar
def test_rar_with_parent_path_is_refused_and_writes_nothing_outside(tmp_path, scratch):
    entry = make_rar(tmp_path / "evil.rar", {"main.py": b"x = 1\n", "../escaped.py": b"x = 2\n"})
    assert refused(entry, scratch) == "the archive holds a path that escapes its folder: '../escaped.py'"
    assert not (scratch / "escaped.py").exists() and not (tmp_path / "escaped.py").exists()


@needs_unar
def test_rar_with_symlink_out_is_refused(tmp_path, scratch):
    entry = make_rar(tmp_path / "link.rar", {"main.py": b"x = 1\n", "data": b"/etc/passwd"},
                     modes={"data": stat.S_IFLNK | 0o777})
    assert refused(entry, scratch) == "the archive holds a symbolic link: 'data'"
    assert not (scratch / "unpacked" / "data").is_symlink()


@needs_unar
def test_rar_bomb_is_refused_from_its_listing(tmp_path, scratch):
    entry = make_rar(tmp_path / "bomb.rar", {"main.py": b"x = 1\n", "zeros.bin": b"0"},
                     declared_sizes={"zeros.bin": 300 * 2**20})   # small file, large claimed size
    assert entry.stat().st_size < 1024
    assert "more than 256 MiB" in refused(entry, scratch)
    assert not (scratch / "unpacked").exists()


@needs_unar
def test_password_protected_rar_is_refused(tmp_path, scratch):
    entry = make_rar(tmp_path / "locked.rar", {"main.py": b"x = 1\n"}, flags=0x04)  # 0x04: encrypted
    assert "password-protected" in refused(entry, scratch)


@needs_unar
def test_corrupt_rar_is_refused(tmp_path, scratch):
    entry = tmp_path / "broken.rar"
    entry.write_bytes(b"this is not an archive at all")
    assert refused(entry, scratch) == "the archive cannot be read (unar does not recognise its format)"


def test_rar_without_unar_says_so(tmp_path, scratch, monkeypatch):
    entry = make_rar(tmp_path / "cs587_jdoe_assignment4.rar", {"main.py": b"x = 1\n"})
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))   # unar and lsar are nowhere to be found
    message = refused(entry, scratch)
    assert message.startswith(".rar archives need unar, which is not installed on this grader")
    assert "a TA will unpack" in message


def test_what_a_tool_unpacked_is_checked_again(tmp_path):
    unpacked = tmp_path / "unpacked"
    (unpacked / "work").mkdir(parents=True)
    (unpacked / "work" / "main.py").write_text("x = 1\n")
    intake._check_unpacked(unpacked)   # a plain folder passes
    (unpacked / "work" / "data").symlink_to("/etc")
    with pytest.raises(NotASubmission, match="symbolic link: 'work/data'"):
        intake._check_unpacked(unpacked)


def test_an_unpacking_tool_is_stopped_at_the_file_count_bound(tmp_path, monkeypatch):
    monkeypatch.setattr(intake, "MAX_FILES", 5)
    archive, kept = tmp_path / "entry.rar", tmp_path / "kept"
    archive.write_bytes(b"Rar!")
    writer = 'i=0; while [ $i -lt 10000 ]; do touch "$1/$i.txt"; echo $i; i=$((i+1)); sleep 0.01; done'
    with pytest.raises(NotASubmission, match="more than 5 files"):
        intake._run_watched(archive, lambda jail: ["/bin/sh", "-c", writer, "writer", jail.out],
                            stdout=tmp_path / "out.txt", messages=tmp_path / "messages.txt", file_cap=2**20,
                            keep=kept)
    written = (tmp_path / "out.txt").read_text().split()
    assert int(written[-1]) < 100   # stopped early, not left to write its 10,000 files
    assert not kept.exists()         # and nothing of it is kept


def test_an_unpacking_tool_cannot_write_a_file_past_the_cap(tmp_path):
    # `head` copies 5000 bytes to its output file; the cap kills it with SIGXFSZ at 1000.
    archive = tmp_path / "entry.rar"
    archive.write_bytes(b"Rar!")
    code = intake._run_watched(archive, lambda jail: ["head", "-c", "5000", "/dev/zero"],
                               stdout=tmp_path / "big.bin", messages=tmp_path / "messages.txt", file_cap=1000)
    assert code == -signal.SIGXFSZ
    assert (tmp_path / "big.bin").stat().st_size <= 1001


# -- several notebooks in one entry: the assignment's own (the handout's one archive) --------------------
REPO = Path(__file__).resolve().parent.parent
WIKIART = REPO / "submissions" / "wikiart" / "alice_correct.ipynb"
SALIENCY = REPO / "submissions" / "saliency" / "alice_correct.ipynb"


def choice_for(name: str) -> NotebookChoice:
    return notebook_choice(assignments.load(name))


def assignment4(tmp_path: Path, wikiart_name: str, saliency_name: str, extra: dict[str, bytes] | None = None) -> Path:
    """cs587_alice_assignment4.zip: the working folder with both parts' notebooks."""
    return make_zip(tmp_path / "cs587_alice_assignment4.zip", {
        f"cs587_alice_assignment4/{wikiart_name}": WIKIART.read_bytes(),
        f"cs587_alice_assignment4/{saliency_name}": SALIENCY.read_bytes(),
        "cs587_alice_assignment4/report.pdf": b"%PDF-1.4 the write-up",
        **(extra or {})})


def test_the_course_names_each_part_s_notebook():
    assert load_course("wikiart").notebook == "*wikiart*"
    assert load_course("saliency").notebook == "*saliency*"
    assert load_course("fruits").notebook is None


def test_the_contract_names_are_the_ones_harvest_reads():
    assert choice_for("wikiart").names == ("build_alexnet", "criterion", "evaluate", "make_optimizer", "train")
    assert choice_for("saliency").names == ("compute_saliency", "saliency_maps")
    assert contract_names("get = lambda n: require(ns, n)\nget('a'); require(ns, 'b'); ns.get('c')\n"
                          "other.get('not_this'); get(f'{x}set')\n") == ("a", "b", "c")


@pytest.mark.parametrize("assignment, graded, other", [("wikiart", "wikiart.ipynb", "saliency.ipynb"),
                                                        ("saliency", "saliency.ipynb", "wikiart.ipynb")])
def test_the_one_archive_is_graded_on_each_part_s_notebook_by_its_name(tmp_path, scratch, assignment, graded, other):
    entry = assignment4(tmp_path, "wikiart.ipynb", "saliency.ipynb")
    submission = prepare(entry, scratch, choice_for(assignment))
    assert submission.main.name == graded
    # Every file of the entry is known for the report's attachments, the other part's notebook too.
    assert sorted(p.name for p in submission.contents) == sorted([graded, other, "report.pdf"])
    assert submission.root == scratch / "unpacked"


def test_notebooks_named_otherwise_are_told_apart_by_the_names_they_define(tmp_path, scratch):
    entry = assignment4(tmp_path, "part1.ipynb", "Part 2 final.ipynb")
    assert prepare(entry, scratch / "w", choice_for("wikiart")).main.name == "part1.ipynb"
    assert prepare(entry, scratch / "s", choice_for("saliency")).main.name == "Part 2 final.ipynb"


def test_the_name_pattern_matches_a_folder_too_and_ignores_case(tmp_path, scratch):
    entry = assignment4(tmp_path, "WikiArt/main.ipynb", "Saliency/main.ipynb")
    assert prepare(entry, scratch, choice_for("wikiart")).main.parent.name == "WikiArt"


def test_two_matching_names_fall_back_to_the_defined_names(tmp_path, scratch):
    # wikiart_notes.ipynb matches *wikiart* but defines none of the contract's names.
    notes = write_notebook(tmp_path / "notes.ipynb", "%matplotlib inline\nimport matplotlib.pyplot as plt")
    entry = assignment4(tmp_path, "wikiart_final.ipynb", "saliency.ipynb",
                        {"cs587_alice_assignment4/wikiart_notes.ipynb": notes.read_bytes()})
    assert prepare(entry, scratch, choice_for("wikiart")).main.name == "wikiart_final.ipynb"


def test_a_tie_is_still_refused_with_what_was_tried(tmp_path, scratch):
    entry = assignment4(tmp_path, "wikiart.ipynb", "saliency.ipynb",
                        {"cs587_alice_assignment4/wikiart_copy.ipynb": WIKIART.read_bytes()})
    with pytest.raises(NotASubmission) as info:
        prepare(entry, scratch, choice_for("wikiart"))
    message = str(info.value)
    assert message.startswith("the submission holds more than one notebook or module (")
    assert "it is not clear which is the wikiart notebook" in message
    assert "2 of them are named like '*wikiart*'" in message
    assert ("cs587_alice_assignment4/wikiart.ipynb, cs587_alice_assignment4/wikiart_copy.ipynb each define 5 of "
            "build_alexnet, criterion, evaluate, make_optimizer, train") in message
    assert message.endswith("; hand in one wikiart notebook, named like '*wikiart*'")


def test_notebooks_that_define_nothing_of_the_contract_are_refused(tmp_path, scratch):
    folder = tmp_path / "two"
    write_notebook(folder / "a.ipynb", "x = 1")
    write_notebook(folder / "b.ipynb", "y = 2")
    message = str(pytest.raises(NotASubmission, prepare, folder, scratch, choice_for("wikiart")).value)
    assert "none is named like '*wikiart*'" in message
    assert "none defines any of build_alexnet, criterion, evaluate, make_optimizer, train" in message


def test_without_a_course_pattern_the_defined_names_decide(tmp_path, scratch):
    folder = tmp_path / "fruity"
    write_notebook(folder / "scratch.ipynb", "import torch")
    main = write_notebook(folder / "solution.ipynb", "network = None", "def extract(loader, net):\n    return 1",
                          "transform = None")
    assert prepare(folder, scratch, choice_for("fruits")).main == main


def test_defined_names_reads_top_level_definitions_only(tmp_path):
    source = ("%matplotlib inline\n!pip install nothing\nimport numpy as np\nfrom torch import nn as neural\n"
              "if True:\n    def train(m):\n        inner = 1\ntry:\n    criterion: object = None\nexcept Exception:\n"
              "    pass\nclass Net: pass\na, (b, c) = 1, (2, 3)\nd[0] = 4\n")
    notebook = write_notebook(tmp_path / "n.ipynb", source, "saliency_maps = {}")
    assert defined_names(notebook) == {"np", "neural", "train", "criterion", "Net", "a", "b", "c", "saliency_maps"}


def test_defined_names_of_an_unreadable_file_are_none(tmp_path):
    (tmp_path / "broken.ipynb").write_text('{"cells": [')
    (tmp_path / "list.ipynb").write_text("[1, 2]")
    (tmp_path / "binary.ipynb").write_bytes(b"\xff\xfe\x00")
    assert [defined_names(tmp_path / n) for n in ("broken.ipynb", "list.ipynb", "binary.ipynb")] == [set()] * 3


def test_a_bad_notebook_pattern_in_course_toml_is_refused_with_a_reason(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "course.toml").write_text("[names]\nnotebook = 3\n")
    with pytest.raises(CourseRuleError, match=r"\[names\] notebook must be a file-name pattern"):
        load_course("x", graders=tmp_path)
