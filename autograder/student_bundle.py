"""What a student downloads: `grade.py student-bundle --assignment A --out DIR` -> DIR/A_student.zip.

    A/A.ipynb            the template notebook
    A/data/A/            the fixture data (or --data: the real set), in the assignment's layout
    A/selfcheck.py       `python selfcheck.py [NOTEBOOK]`: runs the notebook, prints the public checks
    A/selfcheck/         the self-check (autograder/selfcheck/ with this assignment's checks only,
                         and a copy of autograder/weights.py to make stand-in weights)
    A/README.txt         the two commands
    A/torch_home/        only with --with-weights: the weight store's checkpoints

No reference solution, no reference values, no graders, no hidden inputs (tests/test_student_bundle.py
proves it). Weights are not shipped by default (VGG16 alone is 528 MB): the self-check uses the
student's own torchvision download when there is one, else makes stand-ins once, offline.
"""
from __future__ import annotations

import json
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

from . import assignments
from .assignments import REPO

SELFCHECK = REPO / "autograder" / "selfcheck"
STORED_SUFFIXES = {".pth", ".jpg", ".jpeg", ".png"}

ENTRY = '''#!/usr/bin/env python3
"""Self-check of your {assignment} notebook: python selfcheck.py [NOTEBOOK] (default {assignment}.ipynb).

Runs the notebook on the data in data/{data}/ and prints the handout's public checks, task by task.
CPU only, offline. It needs the packages your notebook uses plus nbclient and ipykernel.
"""
import sys

from selfcheck.runner import main

if __name__ == "__main__":
    sys.exit(main())
'''

README = """{title}

  {assignment}.ipynb   the assignment: fill in the TODO cells
  data/{data}/         a small copy of the data set, in the layout the notebook expects
  selfcheck.py         the self-check

Check your notebook (CPU, no internet; about a minute):

  python selfcheck.py                 # checks {assignment}.ipynb
  python selfcheck.py my_copy.ipynb   # or another notebook

It runs every cell, then the handout's public checks (shapes, types, value ranges, names) and
prints one line per check. Passing them is necessary, not sufficient: the autograder also runs your
functions on inputs you have not seen and compares your values with a reference solution.

Weights: if you downloaded the torchvision weights ({models}) they are used (torchvision's cache,
$TORCH_HOME or ~/.cache/torch); otherwise the self-check makes random stand-ins once, in
torch_home/: the checks only look at shapes and types.
"""


@dataclass
class StudentBundle:
    zip_path: Path
    folder_name: str
    size_bytes: int
    files: int


def build_student_bundle(name: str, out: Path, *, data_root: Path, cache: Path,
                         with_weights: bool = False) -> StudentBundle:
    from .weights import CHECKPOINTS
    from .workspace import Workspace
    assignment = assignments.load(name)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} exists and is not a folder")
    workspace = Workspace(cache=cache, data_root=data_root)
    data = workspace.data_dir(assignment)
    if not data.is_dir() or with_weights:
        workspace.prepare(assignment)   # makes what is missing (a fresh machine): data, weights
    members: list[tuple[str, Path | str]] = [
        (f"{name}.ipynb", REPO / "templates" / f"{name}.ipynb"),
        ("selfcheck.py", ENTRY.format(assignment=name, data=assignment.data_name)),
        ("README.txt", README.format(title=assignment.title, assignment=name, data=assignment.data_name,
                                     models=", ".join(assignment.models) or "none")),
        ("selfcheck/assignment.json", json.dumps({"assignment": name, "data": assignment.data_name,
                                                  "models": list(assignment.models)}, indent=2)),
        ("selfcheck/weights.py", REPO / "autograder" / "weights.py"),
        ("selfcheck/public/" + f"{name}.py", SELFCHECK / "public" / f"{name}.py"),
    ]
    for part in ("__init__.py", "__main__.py", "runner.py", "kernel_side.py"):
        members.append((f"selfcheck/{part}", SELFCHECK / part))
    for path in sorted(data.rglob("*")):
        if path.is_file():
            members.append((f"data/{assignment.data_name}/{path.relative_to(data).as_posix()}", path))
    if with_weights:
        store = workspace.store
        manifest = store.manifest()
        kept = {}
        for model in assignment.models:
            file_name = CHECKPOINTS[model].file_name
            kept[file_name] = manifest[file_name]
            members.append((f"torch_home/hub/checkpoints/{file_name}", store.checkpoints / file_name))
        members.append(("torch_home/manifest.json", json.dumps(kept, indent=2, sort_keys=True)))
    out.mkdir(parents=True, exist_ok=True)
    zip_path = out / f"{name}_student.zip"
    partial = zip_path.with_name(zip_path.name + ".partial")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        for arcname, source in members:
            arcname = f"{name}/{arcname}"
            if isinstance(source, str):
                info = zipfile.ZipInfo(arcname)
                info.external_attr = (0o100000 | (0o755 if arcname.endswith(".py") else 0o644)) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                bundle.writestr(info, source)
            else:
                stored = Path(arcname).suffix.lower() in STORED_SUFFIXES
                bundle.write(source, arcname, compress_type=zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED)
    shutil.move(partial, zip_path)
    return StudentBundle(zip_path, name, zip_path.stat().st_size, len(members))
