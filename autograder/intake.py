"""Intake: from an entry of the submissions folder to a notebook the sandbox can run.

An entry is a `.ipynb`, a `.py`, a folder or a `.zip` holding exactly one of them (plus files it
uses). Anything else becomes a `NotASubmission` with a sentence for the report. A module is split
into cells (at `# %%` markers, else at top-level statements) so one failing statement does not hide
every task after it.
"""
from __future__ import annotations

import ast
import io
import json
import shutil
import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

MAX_UNPACKED_BYTES = 256 * 1024 * 1024
MAX_FILES = 2000
MAX_SOURCE_BYTES = 20 * 1024 * 1024
IGNORED = {"__MACOSX", ".ipynb_checkpoints", "__pycache__", ".git"}


class NotASubmission(Exception):
    """The entry cannot be graded as it is; the message says why, for the student."""


@dataclass
class Submission:
    id: str
    entry: Path                 # what the student handed in
    main: Path                  # the notebook or module to run
    base: Path                  # folder whose files travel into the sandbox
    files: list[Path] = field(default_factory=list)


def discover(folder: Path) -> list[Path]:
    """The entries of a submissions folder, in a stable order (hidden files skipped)."""
    return sorted(p for p in Path(folder).iterdir() if not p.name.startswith(".") and p.name not in IGNORED)


def submission_id(entry: Path) -> str:
    name = entry.name
    for suffix in (".ipynb", ".py", ".zip", ".tar.gz", ".tgz"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def prepare(entry: Path, scratch: Path) -> Submission:
    """Locate the notebook or module of `entry`, unpacking an archive into `scratch`."""
    entry = Path(entry)
    sid = submission_id(entry)
    if entry.is_symlink():
        raise NotASubmission("the entry is a symbolic link")
    if entry.is_file() and entry.suffix.lower() in (".ipynb", ".py"):
        return Submission(sid, entry, entry, entry.parent, [entry])
    if entry.is_file() and entry.suffix.lower() == ".zip":
        target = scratch / "unpacked"
        _unzip(entry, target)
        return _from_folder(sid, entry, target)
    if entry.is_dir():
        return _from_folder(sid, entry, entry)
    raise NotASubmission(f"{entry.name!r} is not a notebook (.ipynb), a module (.py), a folder or a .zip")


def _from_folder(sid: str, entry: Path, folder: Path) -> Submission:
    files = [p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()
             and not any(part in IGNORED for part in p.relative_to(folder).parts)]
    if len(files) > MAX_FILES:
        raise NotASubmission(f"the submission holds more than {MAX_FILES} files")
    candidates = [p for p in files if p.suffix.lower() == ".ipynb"] or [p for p in files if p.suffix.lower() == ".py"]
    if not candidates:
        raise NotASubmission("no notebook (.ipynb) or module (.py) was found in the submission")
    if len(candidates) > 1:
        names = ", ".join(str(p.relative_to(folder)) for p in sorted(candidates)[:5])
        raise NotASubmission(f"the submission holds more than one notebook or module ({names}); hand in exactly one")
    main = candidates[0]
    return Submission(sid, entry, main, main.parent, [p for p in files if main.parent in p.parents or p == main])


def _unzip(archive: Path, target: Path) -> None:
    """Unpack safely: no absolute or escaping paths, no links, bounded size and count."""
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            if len(members) > MAX_FILES:
                raise NotASubmission(f"the archive holds more than {MAX_FILES} files")
            if sum(m.file_size for m in members) > MAX_UNPACKED_BYTES:
                raise NotASubmission("the archive unpacks to more than 256 MiB")
            for member in members:
                name = member.filename
                parts = Path(name).parts
                if name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
                    raise NotASubmission(f"the archive holds a path that escapes its folder: {name!r}")
                if stat.S_ISLNK(member.external_attr >> 16):
                    raise NotASubmission(f"the archive holds a symbolic link: {name!r}")
                if member.is_dir():
                    continue
                destination = target / name
                destination.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(member) as source, open(destination, "wb") as sink:
                    shutil.copyfileobj(source, sink, length=1024 * 1024)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as error:
        raise NotASubmission(f"the archive cannot be read ({error})") from None


def load_notebook(submission: Submission) -> nbformat.NotebookNode:
    """The notebook to execute: the student's, or their module cut into cells."""
    path = submission.main
    if path.stat().st_size > MAX_SOURCE_BYTES:
        raise NotASubmission(f"{path.name} is larger than {MAX_SOURCE_BYTES // 2**20} MiB")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise NotASubmission(f"{path.name} is not UTF-8 text") from None
    if path.suffix.lower() == ".py":
        return module_to_notebook(text)
    if not text.strip():
        raise NotASubmission(f"{path.name} is empty")
    try:
        notebook = nbformat.reads(text, as_version=4)
    except (json.JSONDecodeError, nbformat.reader.NotJSONError) as error:
        raise NotASubmission(f"{path.name} is not a valid notebook: its JSON is broken ({str(error)[:200]})") from None
    except Exception as error:  # noqa: BLE001 - nbformat raises assorted errors on odd files
        raise NotASubmission(f"{path.name} is not a valid notebook ({type(error).__name__}: {str(error)[:200]})") from None
    language = (notebook.metadata.get("kernelspec", {}) or {}).get("language") or \
        (notebook.metadata.get("language_info", {}) or {}).get("name") or "python"
    if str(language).lower() != "python":
        raise NotASubmission(f"{path.name} is a notebook for {language}, not Python")
    notebook.cells = [c for c in notebook.cells if c.get("cell_type") in ("code", "markdown", "raw")]
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return notebook


def module_to_notebook(text: str) -> nbformat.NotebookNode:
    """Cells at `# %%` markers, else one cell per top-level statement (with its comments)."""
    # Only \n and \r end a line for `ast`; str.splitlines would also split at \x0c or U+2028.
    lines = io.StringIO(text, newline="").readlines()
    if any(line.startswith("# %%") for line in lines):
        chunks, current = [], []
        for line in lines:
            if line.startswith("# %%") and current:
                chunks.append("".join(current))
                current = []
            current.append(line)
        chunks.append("".join(current))
    else:
        try:
            tree = ast.parse(text)
        except SyntaxError:
            chunks = [text]  # run as one cell: the kernel reports the syntax error where it is
        else:
            starts = [node.lineno - 1 for node in tree.body]
            starts = [min(s, getattr(n, "decorator_list", [n])[0].lineno - 1 if getattr(n, "decorator_list", None) else s)
                      for s, n in zip(starts, tree.body)]
            bounds = [0] + starts[1:] + [len(lines)]
            chunks = ["".join(lines[a:b]) for a, b in zip(bounds, bounds[1:])]
    cells = [_module_cell(chunk) for chunk in chunks if chunk.strip()]
    notebook = nbformat.v4.new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Python 3"}
    notebook.metadata["autograder"] = {"source": "module"}
    return notebook


def _module_cell(chunk: str):
    """A `# %% [markdown]` chunk (jupytext) becomes a markdown cell of its comment lines."""
    lines = chunk.rstrip("\n").splitlines()
    if lines and lines[0].startswith("# %%") and "[markdown]" in lines[0]:
        text = "\n".join(line[2:] if line.startswith("# ") else line.lstrip("#") for line in lines[1:])
        return nbformat.v4.new_markdown_cell(text.strip())
    return nbformat.v4.new_code_cell(chunk.rstrip("\n"))
