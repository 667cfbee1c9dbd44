"""Intake: from an entry of the submissions folder to a notebook the sandbox can run.

An entry is a `.ipynb`, a `.py`, a folder or an archive (`.zip`, `.tar.gz`/`.tgz`/`.tar`/`.gz`, `.rar`)
holding one of them (plus files it uses). An entry holding several (the wikiart/saliency handout's one
archive holds a notebook per part) is graded on the assignment's own: the one whose path matches its
course.toml's `[names] notebook` glob, else the one defining the most of the names its harvest.py
reads; when that still leaves a tie, the entry is refused. Every archive is unpacked under the same checks: no
member outside the folder, no links, no special files, at most MAX_FILES members and
MAX_UNPACKED_BYTES in all. Anything else becomes a `NotASubmission` with a sentence for the report.
A module is split into cells (at `# %%` markers, else at top-level statements) so one failing
statement does not hide every task after it.
"""
from __future__ import annotations

import ast
import fnmatch
import io
import json
import lzma
import os
import re
import shutil
import signal
import stat
import tarfile
import time
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from .sandbox.tools import ToolJail

MAX_UNPACKED_BYTES = 256 * 1024 * 1024
MAX_FILES = 2000
MAX_SOURCE_BYTES = 20 * 1024 * 1024
IGNORED = {"__MACOSX", ".ipynb_checkpoints", "__pycache__", ".git"}
ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz", ".tar", ".gz", ".rar")   # ".gz": the handout's "zip/rar/gz"
UNAR_TIMEOUT_S = 120
LISTING_CAP_BYTES = 16 * 1024 * 1024   # lsar's JSON listing: ~700 bytes a member, far above MAX_FILES
UNAR_MISSING = (".rar archives need unar, which is not installed on this grader "
                "(setup.sh installs it: apt-get install unar); a TA will unpack this submission by hand")


class NotASubmission(Exception):
    """The entry cannot be graded as it is; the message says why, for the student."""


@dataclass
class Submission:
    id: str
    entry: Path                 # what the student handed in
    main: Path                  # the notebook or module to run
    base: Path                  # folder whose files travel into the sandbox
    files: list[Path] = field(default_factory=list)
    root: Path | None = None    # the entry's top folder (its unpacked copy for an archive)
    contents: list[Path] = field(default_factory=list)   # every file of the entry: logs, reports, ...


@dataclass(frozen=True)
class NotebookChoice:
    """How to tell one assignment's notebook among several in an entry."""
    assignment: str
    pattern: str | None = None          # course.toml [names] notebook: a glob on the path inside the entry
    names: tuple[str, ...] = ()         # top-level names the assignment's graders read (contract_names)
    problem: str = ""                   # why the pattern could not be read, for a refusal's message


def discover(folder: Path) -> list[Path]:
    """The entries of a submissions folder, in a stable order (hidden files skipped)."""
    return sorted(p for p in Path(folder).iterdir() if not p.name.startswith(".") and p.name not in IGNORED)


def submission_id(entry: Path) -> str:
    """The entry's name without its extension: the key of its output folder and gradebook row."""
    name = entry.name
    for suffix in (".ipynb", ".py") + ARCHIVE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def compile_id_pattern(pattern: str | None) -> re.Pattern | None:
    """A student-id pattern checked once: a regular expression with a group named `id` (None: the default)."""
    if pattern is None:
        return None
    try:
        compiled = re.compile(pattern)
    except re.error as error:
        raise ValueError(f"the id pattern {pattern!r} is not a valid regular expression ({error})") from None
    if "id" not in compiled.groupindex:
        raise ValueError(f"the id pattern {pattern!r} has no group named id; write it like "
                         "cs587_(?P<id>[^_]+)_assignment4")
    return compiled


def student_id(entry: Path, pattern: re.Pattern | None) -> str | None:
    """The student's id from the entry's name without extension: the pattern's group `id` (searched, so
    `cs587_bob_assignment4 (1)` still gives bob); the whole name without a pattern; None when it does not match."""
    name = submission_id(entry)
    if pattern is None:
        return name
    match = pattern.search(name)
    return match.group("id") if match and match.group("id") else None


def prepare(entry: Path, scratch: Path, choice: NotebookChoice | None = None) -> Submission:
    """Locate the notebook or module of `entry`, unpacking an archive into `scratch`; `choice` picks
    the assignment's notebook where the entry holds several (None: several are refused)."""
    entry = Path(entry)
    sid = submission_id(entry)
    if entry.is_symlink():
        raise NotASubmission("the entry is a symbolic link")
    if entry.is_file() and entry.suffix.lower() in (".ipynb", ".py"):
        return Submission(sid, entry, entry, entry.parent, [entry], entry.parent, [entry])
    if entry.is_file() and entry.name.lower().endswith(ARCHIVE_SUFFIXES):
        target = scratch / "unpacked"
        _UNPACKERS[_archive_kind(entry)](entry, target)
        return _from_folder(sid, entry, target, choice)
    if entry.is_dir():
        return _from_folder(sid, entry, entry, choice)
    raise NotASubmission(f"{entry.name!r} is not a notebook (.ipynb), a module (.py), a folder or an archive "
                         "(.zip, .tar.gz, .tgz, .rar)")


def _from_folder(sid: str, entry: Path, folder: Path, choice: NotebookChoice | None = None) -> Submission:
    files = [p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()
             and not any(part in IGNORED for part in p.relative_to(folder).parts)]
    if len(files) > MAX_FILES:
        raise NotASubmission(f"the submission holds more than {MAX_FILES} files")
    candidates = [p for p in files if p.suffix.lower() == ".ipynb"] or [p for p in files if p.suffix.lower() == ".py"]
    if not candidates:
        raise NotASubmission("no notebook (.ipynb) or module (.py) was found in the submission")
    main = _pick(sorted(candidates), folder, choice)
    return Submission(sid, entry, main, main.parent, [p for p in files if main.parent in p.parents or p == main],
                      folder, files)


# -- several notebooks in one entry: the assignment's own ------------------------------------------
def _pick(candidates: list[Path], folder: Path, choice: NotebookChoice | None) -> Path:
    """The one candidate, or the assignment's among several (by path pattern, then by the names it
    defines); refused when that leaves no single one."""
    if len(candidates) == 1:
        return candidates[0]
    inside = {p: p.relative_to(folder).as_posix() for p in candidates}
    listed = ", ".join(inside[p] for p in candidates[:5]) + (", ..." if len(candidates) > 5 else "")
    refusal = f"the submission holds more than one notebook or module ({listed})"
    if choice is None:
        raise NotASubmission(f"{refusal}; hand in exactly one")
    pool, named = candidates, []
    if choice.pattern:
        named = [p for p in candidates if fnmatch.fnmatchcase(inside[p].lower(), choice.pattern.lower())]
        if len(named) == 1:
            return named[0]
        pool = named or candidates
    wanted = set(choice.names)
    counts = {p: len(defined_names(p) & wanted) for p in pool}
    best = max(counts.values())
    top = [p for p in pool if counts[p] == best]
    if best > 0 and len(top) == 1:
        return top[0]
    # Still ambiguous: say what was tried, so the student knows how to name or split their files.
    tried = []
    if choice.pattern:
        tried.append(f"{len(named)} of them are named like {choice.pattern!r}" if named
                     else f"none is named like {choice.pattern!r}")
    elif choice.problem:
        tried.append(f"the course's notebook pattern could not be read ({choice.problem})")
    needs = ", ".join(choice.names) or "no names"
    tried.append(f"none defines any of {needs}" if best == 0 else
                 f"{', '.join(inside[p] for p in top[:5])} each define {best} of {needs}")
    ask = (f"hand in one {choice.assignment} notebook, named like {choice.pattern!r}" if choice.pattern
           else "hand in exactly one")
    raise NotASubmission(f"{refusal} and it is not clear which is the {choice.assignment} notebook "
                         f"({'; '.join(tried)}); {ask}")


def contract_names(harvest_source: str) -> tuple[str, ...]:
    """The student's top-level names an assignment's harvest.py reads: its `get("name")`,
    `require(ns, "name")` and `ns.get("name")` calls with a literal name (the contract's symbols)."""
    names = []
    for node in ast.walk(ast.parse(harvest_source)):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        function = node.func
        if isinstance(function, ast.Name) and function.id in ("get", "require"):
            argument = node.args[-1]
        elif isinstance(function, ast.Attribute) and function.attr == "get" \
                and isinstance(function.value, ast.Name) and function.value.id == "ns":
            argument = node.args[0]
        else:
            continue
        if isinstance(argument, ast.Constant) and isinstance(argument.value, str) and argument.value.isidentifier():
            names.append(argument.value)
    return tuple(sorted(set(names)))


def defined_names(path: Path) -> set[str]:
    """Top-level names a notebook's code cells (or a module) define, read without running anything;
    an unreadable file defines none."""
    try:
        if path.stat().st_size > MAX_SOURCE_BYTES:
            return set()
        text = path.read_text(encoding="utf-8-sig")
        if path.suffix.lower() == ".py":
            sources = [text]
        else:
            cells = json.loads(text).get("cells", [])
            sources = ["".join(c["source"]) if isinstance(c.get("source"), list) else str(c.get("source", ""))
                       for c in cells if isinstance(c, dict) and c.get("cell_type") == "code"]
    except (OSError, UnicodeDecodeError, ValueError, AttributeError, TypeError, RecursionError):
        return set()
    names: set[str] = set()
    for source in sources:
        names |= _top_level_names(source)
    return names


def _top_level_names(source: str) -> set[str]:
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        # IPython's magics (%matplotlib, !pip) are not Python: blank them out and try once more.
        cleaned = "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())
        try:
            tree = ast.parse(cleaned)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            return set()
    names: set[str] = set()
    statements = list(tree.body)
    while statements:
        node = statements.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(n.id for t in targets for n in ast.walk(t)
                         if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store))
        else:  # a definition under `if`, `try`, `with` or `for` at the top level is still top level
            for body in ("body", "orelse", "finalbody", "handlers"):
                statements.extend(getattr(node, body, []) or [])
    return names


# -- archives: one set of checks for every format ---------------------------------------------------
def _check_name(name: str) -> None:
    """Refuse a member name that would land outside the folder it is unpacked into."""
    parts = re.split(r"[/\\]", name)
    if name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
        raise NotASubmission(f"the archive holds a path that escapes its folder: {name!r}")


def _check_kind(name: str, *, link: bool = False, hard_link: bool = False, special: bool = False) -> None:
    """Refuse links (inside or out: a link is never unpacked) and devices, pipes and sockets."""
    if link or hard_link:
        raise NotASubmission(f"the archive holds a {'hard' if hard_link else 'symbolic'} link: {name!r}")
    if special:
        raise NotASubmission(f"the archive holds a special file (device, pipe or socket): {name!r}")


def _check_bounds(members: int, unpacked_bytes: int) -> None:
    if members > MAX_FILES:
        raise NotASubmission(f"the archive holds more than {MAX_FILES} files")
    if unpacked_bytes > MAX_UNPACKED_BYTES:
        raise NotASubmission(f"the archive unpacks to more than {MAX_UNPACKED_BYTES // 2**20} MiB")


def _archive_kind(entry: Path) -> str:
    """zip, tar or rar by the file's first bytes, else by its name: students rename archives."""
    with open(entry, "rb") as handle:
        head = handle.read(512)
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if head.startswith(b"Rar!\x1a\x07"):
        return "rar"
    if head.startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")) or head[257:262] == b"ustar":
        return "tar"
    name = entry.name.lower()
    return "zip" if name.endswith(".zip") else "rar" if name.endswith(".rar") else "tar"


def _unzip(archive: Path, target: Path) -> None:
    """Unpack safely: every member checked before anything is written."""
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            _check_bounds(len(members), sum(m.file_size for m in members))
            for member in members:
                _check_name(member.filename)
                mode = member.external_attr >> 16
                _check_kind(member.filename, link=stat.S_ISLNK(mode),
                            special=stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR))
            for member in members:
                if member.is_dir():
                    continue
                destination = target / member.filename
                destination.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(member) as source, open(destination, "wb") as sink:
                    shutil.copyfileobj(source, sink, length=1024 * 1024)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, zlib.error) as error:
        raise NotASubmission(f"the archive cannot be read ({error})") from None


def _untar(archive: Path, target: Path) -> None:
    """Unpack a tar (plain or gzip/bzip2/xz) with the same checks, then tarfile's 'data' filter."""
    try:
        with tarfile.open(archive, "r:*") as tf:
            members, unpacked = [], 0
            # Header by header: the first one past a bound stops the walk, so a bomb is never inflated.
            for member in tf:
                members.append(member)
                _check_name(member.name)
                _check_kind(member.name, link=member.issym(), hard_link=member.islnk(),
                            special=not (member.isfile() or member.isdir()))
                unpacked += member.size if member.isfile() else 0
                _check_bounds(len(members), unpacked)
            tf.extractall(target, members=members, filter="data")
    except tarfile.FilterError as error:
        raise NotASubmission(f"the archive holds an unsafe member ({error})") from None
    except tarfile.ReadError as error:
        raise NotASubmission(f"the archive cannot be read as a tar archive ({error})") from None
    except (tarfile.TarError, OSError, EOFError, zlib.error, lzma.LZMAError) as error:
        raise NotASubmission(f"the archive cannot be read ({error})") from None


def _unrar(archive: Path, target: Path) -> None:
    """Unpack with Debian's unar, jailed (sandbox/tools.py): its listing (lsar) checked first, the
    unpacking watched for size and time, and every path it wrote checked again before it is used."""
    unar, lsar = shutil.which("unar"), shutil.which("lsar")
    if unar is None or lsar is None:
        raise NotASubmission(UNAR_MISSING)
    messages, listing = target.parent / "unar-messages.txt", target.parent / "lsar.json"
    code = _run_watched(archive, lambda jail: [lsar, "-json", "-no-recursion", jail.input],
                        stdout=listing, messages=messages, file_cap=LISTING_CAP_BYTES)
    if code == -signal.SIGXFSZ:  # a listing this long names far more than MAX_FILES members
        _check_bounds(MAX_FILES + 1, 0)
    try:
        contents = json.loads(listing.read_text(encoding="utf-8"))["lsarContents"]
    except (ValueError, KeyError, TypeError, OSError):
        reason = _last_line(messages) or "unar does not recognise its format"
        raise NotASubmission(f"the archive cannot be read ({reason})") from None
    _check_bounds(len(contents), sum(int(m.get("XADFileSize", 0) or 0) for m in contents))
    for member in contents:
        name = str(member.get("XADFileName", ""))
        _check_name(name)
        _check_kind(name, link=bool(member.get("XADIsLink")))
        if member.get("XADIsEncrypted"):
            raise NotASubmission(f"the archive is password-protected ({name!r}); hand it in without a password")
    code = _run_watched(archive, lambda jail: [unar, "-quiet", "-no-recursion", "-no-directory",
                                               "-force-overwrite", "-output-directory", jail.out, jail.input],
                        stdout=messages, messages=messages, file_cap=MAX_UNPACKED_BYTES, keep=target)
    if code == -signal.SIGXFSZ:  # one file alone reached the size bound
        _check_bounds(0, MAX_UNPACKED_BYTES + 1)
    if code != 0:
        raise NotASubmission(f"the archive cannot be read ({_last_line(messages) or f'unar exited with {code}'})")


def _run_watched(archive: Path, command, *, stdout: Path, messages: Path, file_cap: int,
                 keep: Path | None = None) -> int:
    """Run an unpacking tool, jailed, on a copy of `archive`: every file it writes capped at `file_cap`
    bytes, a deadline, and the folder it fills measured while it runs (the tool stopped past a bound).
    `keep`: where what it unpacked goes once it has passed the archive checks."""
    with ToolJail(archive, file_bytes=file_cap + 1, cpu_seconds=UNAR_TIMEOUT_S) as jail:
        with open(stdout, "ab") as out, open(messages, "ab") as err:
            process = jail.popen(command(jail), stdout=out, stderr=err)
        deadline = time.monotonic() + UNAR_TIMEOUT_S
        while process.poll() is None:
            past_bound = keep is not None and _past_bounds(jail.out_dir)
            if past_bound or time.monotonic() > deadline:
                jail.kill(process)
                if past_bound:
                    _check_bounds(*past_bound)
                raise NotASubmission(f"unpacking the archive took more than {UNAR_TIMEOUT_S} s")
            time.sleep(0.05)
        code = jail.exit_status(process.returncode)
        if keep is not None and code == 0:
            _check_unpacked(jail.out_dir)   # before anything is opened or moved: links, special files
            jail.hand_back()
            shutil.move(str(jail.out_dir), str(keep))
        return code


def _past_bounds(folder: Path) -> tuple[int, int] | None:
    """(entries, bytes) under `folder` when past a bound, else None."""
    entries = size = 0
    for root, dirs, files in os.walk(folder):
        entries += len(dirs) + len(files)
        for name in files:
            try:
                size += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass  # a file the tool is replacing right now
    return (entries, size) if entries > MAX_FILES or size > MAX_UNPACKED_BYTES else None


def _check_unpacked(target: Path) -> None:
    """What a tool unpacked, checked with the archive checks: names, kinds, count and size."""
    members, unpacked = 0, 0
    root = target.resolve()
    for path in sorted(target.rglob("*")):
        name = str(path.relative_to(target))
        members += 1
        info = path.lstat()
        _check_name(name)
        _check_kind(name, link=stat.S_ISLNK(info.st_mode),
                    special=not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)))
        if root not in path.resolve().parents:
            raise NotASubmission(f"the archive holds a path that escapes its folder: {name!r}")
        unpacked += info.st_size if stat.S_ISREG(info.st_mode) else 0
        _check_bounds(members, unpacked)


def _last_line(path: Path) -> str:
    """The last line a tool printed, for the report."""
    try:
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1][:200] if lines else ""


_UNPACKERS = {"zip": _unzip, "tar": _untar, "rar": _unrar}


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
