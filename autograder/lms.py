"""The LMS autograder bundle: Gradescope's format, and a Dockerfile for other LMSs.

`grade.py lms build --assignment A --out DIR` writes DIR/autograder_A.zip and DIR/Dockerfile.
The zip holds everything grading needs, so nothing is downloaded when a submission is graded:

    setup.sh, run_autograder   Gradescope's two entry points (templates/lms/)
    requirements.txt           pyproject's dependencies, each pinned to the version this harness runs
    bundle.json                what was bundled: assignment, limits, data, weights, reference digest
    grade.py, autograder/      the harness (without the students' self-check)
    graders/A/, reference/A.py the assignment's graders and reference solution
    templates/report/          the feedback page
    data/A/                    the fixture data, or the real data set (--data)
    cache/torch/               the checkpoints the assignment uses (stored, not deflated)
    cache/probes/, cache/reference/A/bundled/   hidden inputs and the reference values computed here

Inside the container (`python -m autograder.lms ...`, cwd = the unpacked bundle):
    prepare [--check]   setup.sh: take over the bundled reference values (or recompute them offline)
    run --root ROOT     run_autograder: grade ROOT/submission/, write ROOT/results/results.json
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
import traceback
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from . import assignments
from .assignments import HARVEST_COMMON, REPO, Assignment
from .intake import ARCHIVE_SUFFIXES

LMS_TEMPLATES = REPO / "templates" / "lms"
BUNDLED_REFERENCE = "bundled"   # cache/reference/<a>/bundled: the values computed when the bundle was built
# Files that do not shrink when deflated: stored as they are (deflating 500 MB of weights takes a minute).
STORED_SUFFIXES = {".pth", ".pt", ".npy", ".npz", ".jpg", ".jpeg", ".png", ".zip"}


class BundleError(Exception):
    """A bundle cannot be built or used as asked; the message says why and what to do."""


# -- building ----------------------------------------------------------------------------------
@dataclass
class BuiltBundle:
    zip_path: Path
    dockerfile: Path
    size_bytes: int
    files: int
    config: dict


def build_bundle(name: str, out: Path, *, data_root: Path, cache: Path, isolation: str = "auto",
                 limit_overrides: dict | None = None) -> BuiltBundle:
    """Write out/autograder_<name>.zip and out/Dockerfile; returns what was written."""
    from .workspace import Workspace
    assignment = assignments.load(name)
    overrides = {k: v for k, v in (limit_overrides or {}).items() if v is not None}
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BundleError(f"--out {out} exists and is not a folder")
    workspace = Workspace(cache=cache, data_root=data_root)
    reference = workspace.prepare(assignment)   # weights, data, probes, reference values (made if missing)
    missing = [w["model"] for w in workspace.store.describe(list(assignment.models)) if w["kind"] == "missing"]
    if missing:
        raise BundleError(f"the weight store {workspace.store.root} has no checkpoint for {', '.join(missing)}")
    requirements = pinned_requirements()
    config = {
        "assignment": name,
        "title": assignment.title,
        "built": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "harness": _harness_version(),
        "isolation": isolation,
        "limits": overrides,
        "data": {"kind": "fixture" if workspace.data_root == (REPO / "data").resolve() else "real",
                 "source": str(workspace.data_dir(assignment))},
        "weights": workspace.store.describe(list(assignment.models)),
        "probes": f"cache/probes/{workspace.probes_dir(assignment).name}",
        "reference": {"folder": f"cache/reference/{name}/{BUNDLED_REFERENCE}",
                      "inputs": inputs_digest(workspace, assignment), **_versions()},
        "requirements": requirements,
    }
    members = list(_members(assignment, workspace, reference))
    out.mkdir(parents=True, exist_ok=True)
    zip_path = out / f"autograder_{name}.zip"
    partial = zip_path.with_name(zip_path.name + ".partial")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as bundle:
        for arcname, source in members:
            _add_file(bundle, arcname, source)
        for arcname in ("setup.sh", "run_autograder"):
            _add_text(bundle, arcname, (LMS_TEMPLATES / arcname).read_text(), mode=0o755)
        _add_text(bundle, "requirements.txt", "\n".join(requirements) + "\n")
        _add_text(bundle, "bundle.json", json.dumps(config, indent=2) + "\n")
    partial.replace(zip_path)
    dockerfile = out / "Dockerfile"
    dockerfile.write_text((LMS_TEMPLATES / "Dockerfile").read_text().replace("@ASSIGNMENT@", name))
    return BuiltBundle(zip_path, dockerfile, zip_path.stat().st_size, len(members) + 4, config)


def pinned_requirements() -> list[str]:
    """pyproject's dependencies, pinned: its own `==` pins as written, every other package to the
    version installed here (the one the harness's tests ran with)."""
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    pinned = []
    for requirement in dependencies:
        if "==" in requirement:
            pinned.append(requirement.strip())
            continue
        name = requirement.strip()
        try:
            pinned.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            raise BundleError(f"{name} (a dependency in pyproject.toml) is not installed here: "
                              "run setup.sh first, so that the bundle pins the versions the harness uses") from None
    return pinned


def _members(assignment: Assignment, workspace, reference: Path):
    """(name in the zip, file on disk) for every file the container needs."""
    def tree(folder: Path, prefix: str, skip=()):
        for path in sorted(folder.rglob("*")):
            relative = path.relative_to(folder)
            if path.is_file() and "__pycache__" not in relative.parts and not path.name.endswith(".lock") \
                    and not any(relative.parts[0] == s for s in skip):
                yield f"{prefix}/{relative.as_posix()}", path

    yield "grade.py", REPO / "grade.py"
    yield "pyproject.toml", REPO / "pyproject.toml"
    yield from tree(REPO / "autograder", "autograder", skip=("selfcheck",))
    yield "graders/__init__.py", REPO / "graders" / "__init__.py"
    yield "graders/pytest.ini", REPO / "graders" / "pytest.ini"
    yield "graders/harvest_common.py", HARVEST_COMMON
    yield from tree(assignment.folder, f"graders/{assignment.name}")
    yield "reference/__init__.py", REPO / "reference" / "__init__.py"
    yield f"reference/{assignment.name}.py", REPO / "reference" / f"{assignment.name}.py"
    yield from tree(REPO / "templates" / "report", "templates/report")
    yield from tree(workspace.data_dir(assignment), f"data/{assignment.data_name}")
    probes = workspace.probes_dir(assignment)
    yield from tree(probes, f"cache/probes/{probes.name}")
    yield from tree(reference, f"cache/reference/{assignment.name}/{BUNDLED_REFERENCE}")
    # Only this assignment's checkpoints, and a manifest that lists only them.
    store = workspace.store
    manifest = store.manifest()
    from .weights import CHECKPOINTS
    kept = {}
    for model in assignment.models:
        file_name = CHECKPOINTS[model].file_name
        kept[file_name] = manifest[file_name]
        yield f"cache/torch/hub/checkpoints/{file_name}", store.checkpoints / file_name
    yield "cache/torch/manifest.json", json.dumps(kept, indent=2, sort_keys=True)


def _add_file(bundle: zipfile.ZipFile, arcname: str, source) -> None:
    if isinstance(source, str):   # generated text
        _add_text(bundle, arcname, source)
        return
    compress = zipfile.ZIP_STORED if Path(arcname).suffix.lower() in STORED_SUFFIXES else zipfile.ZIP_DEFLATED
    bundle.write(source, arcname, compress_type=compress)


def _add_text(bundle: zipfile.ZipFile, arcname: str, text: str, mode: int = 0o644) -> None:
    info = zipfile.ZipInfo(arcname, date_time=time.localtime()[:6])
    info.external_attr = (0o100000 | mode) << 16   # a regular file with these permissions (unzip keeps them)
    info.compress_type = zipfile.ZIP_DEFLATED
    bundle.writestr(info, text)


def _harness_version() -> str:
    try:
        commit = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"],
                                capture_output=True, text=True, timeout=10)
        return commit.stdout.strip() or "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def _versions() -> dict:
    return {"torch": metadata.version("torch"), "torchvision": metadata.version("torchvision")}


def inputs_digest(workspace, assignment: Assignment) -> str:
    """Everything the reference values depend on, by content (the workspace's own cache key uses
    mtimes, which unpacking a zip does not keep): data, probes, weights, the reference's code."""
    digest = hashlib.sha256()
    for folder in (workspace.data_dir(assignment), workspace.probes_dir(assignment)):
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                digest.update(f"{path.relative_to(folder).as_posix()}|{_sha256(path)}\n".encode())
    digest.update(workspace.store.fingerprint(list(assignment.models)).encode())
    for source in assignment.source_files():
        digest.update(source.read_bytes() if source.exists() else b"-")
    return digest.hexdigest()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# -- inside the container ------------------------------------------------------------------------
def _bundle_config(source: Path) -> dict:
    path = source / "bundle.json"
    if not path.is_file():
        raise BundleError(f"{path} is missing: run this from an unpacked autograder bundle")
    return json.loads(path.read_text())


def _bundle_workspace(source: Path):
    from .workspace import Workspace
    if Path(assignments.REPO).resolve() != source.resolve():
        raise BundleError(f"the harness imported from {assignments.REPO} is not the bundle's ({source}): "
                          "run from the bundle's folder")
    return Workspace(cache=source / "cache", data_root=source / "data")


def take_over_reference(source: Path, config: dict, *, check_only: bool = False) -> str:
    """Put the bundled reference values where the workspace looks for them, if they were computed
    from exactly these inputs with these torch versions; otherwise leave them to be recomputed
    (offline: data and weights are in the bundle). Returns what happened, in words."""
    assignment = assignments.load(config["assignment"])
    workspace = _bundle_workspace(source)
    store_kinds = workspace.store.describe(list(assignment.models))
    missing = [w["file"] for w in store_kinds if w["kind"] == "missing"]
    if missing:
        raise BundleError(f"the bundle's weight store lacks {', '.join(missing)}")
    if not workspace.data_dir(assignment).is_dir():
        raise BundleError(f"the bundle has no data at {workspace.data_dir(assignment)}")
    target = workspace.cache / "reference" / assignment.name / workspace.reference_key(assignment)
    if (target / "manifest.json").exists():
        return f"reference values ready ({target.relative_to(source)})"
    bundled = source / config["reference"]["folder"]
    reasons = []
    if not (bundled / "manifest.json").is_file():
        reasons.append("the bundle holds no reference values")
    if inputs_digest(workspace, assignment) != config["reference"]["inputs"]:
        reasons.append("data, hidden inputs, weights or reference code differ from those they were computed from")
    versions = _versions()
    if any(versions[k] != config["reference"].get(k) for k in versions):
        reasons.append(f"they were computed with torch {config['reference'].get('torch')} / torchvision "
                       f"{config['reference'].get('torchvision')}, this is {versions['torch']} / {versions['torchvision']}")
    if reasons:
        if check_only:
            return "bundled reference values NOT usable: " + "; ".join(reasons)
        workspace.prepare(assignment, build_data=False)
        return "reference values recomputed: " + "; ".join(reasons)
    if check_only:
        return "bundled reference values match the bundle's data, hidden inputs, weights and torch"
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=_mkdirs(target.parent)))
    try:
        shutil.copytree(bundled, scratch, dirs_exist_ok=True)
        scratch.rename(target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return f"bundled reference values taken over ({target.relative_to(source)})"


def _mkdirs(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def fingerprint(source: Path) -> dict[str, str]:
    """What the grader's own files hold: a submission must not change any of them while it runs
    (without bubblewrap it runs as the same user as the grader). Checkpoints by size and mtime."""
    prints = {}
    for path in sorted(source.rglob("*")):
        if not path.is_file() or path.is_symlink():
            continue
        relative = path.relative_to(source).as_posix()
        if relative.startswith("cache/torch/"):
            stat = path.stat()
            prints[relative] = f"{stat.st_size}:{stat.st_mtime_ns}"
        else:
            prints[relative] = _sha256(path)
    return prints


def _entry(submission: Path) -> Path:
    """What to grade in Gradescope's submission folder: the folder, or the one archive in it."""
    submission.mkdir(parents=True, exist_ok=True)
    files = [p for p in submission.iterdir() if not p.name.startswith(".") and p.name != "__MACOSX"]
    has_code = any(p.suffix.lower() in (".ipynb", ".py") for p in submission.rglob("*") if p.is_file())
    if len(files) == 1 and files[0].is_file() and files[0].name.lower().endswith(ARCHIVE_SUFFIXES) and not has_code:
        return files[0]
    return submission


def _lateness(root: Path, assignment_name: str):
    """The submission's lateness from Gradescope's submission_metadata.json (None when absent)."""
    from . import late
    metadata = root / "submission_metadata.json"
    if not metadata.is_file():
        print("no submission_metadata.json: no late policy applied")
        return None
    try:
        return late.gradescope_lateness(assignment_name, metadata)
    except late.CourseRuleError as error:
        print(f"late policy not applied: {error}")
        return None


def run_submission(root: Path) -> dict:
    """Grade root/submission/ with the bundle in root/source/; write root/results/results.json."""
    started = time.monotonic()
    source, results = root / "source", root / "results"
    results.mkdir(parents=True, exist_ok=True)
    config = _bundle_config(source)
    remark = take_over_reference(source, config)
    print(f"{config['assignment']}: {remark}")
    from .pipeline import SubmissionGrader
    limits = dict(config.get("limits", {}))
    limits.setdefault("threads", os.cpu_count() or 1)   # one submission per container: all its cores
    assignment = assignments.load(config["assignment"], **limits)
    workspace = _bundle_workspace(source)
    # The results folder may be shown to the student at once (Gradescope shows only results.json,
    # another LMS the whole folder): its report.html holds hidden-input checks back like results.json.
    grader = SubmissionGrader(assignment, workspace, isolation=config.get("isolation", "auto"),
                              hide_until_published=True)
    if os.geteuid() == 0:
        # In a container bubblewrap may not be allowed, and then the kernel sees the real file tree
        # as its private uid; the bundle's reference, graders and cached answers are shut to it
        # whatever the isolation level (SubmissionGrader does so itself only without bubblewrap).
        workspace.hide_from_kernels()
    lateness = _lateness(root, config["assignment"])
    before = fingerprint(source)   # after the grader's own set-up (its lock files), before student code
    with tempfile.TemporaryDirectory(prefix="lms-out-") as scratch:
        row = grader.grade(_entry(root / "submission"), Path(scratch), lateness=lateness)
        graded = Path(scratch) / row["id"]
        result = json.loads((graded / "results.json").read_text())
        run = json.loads((graded / "run.json").read_text()) if (graded / "run.json").is_file() else {}
        if (graded / "report.html").is_file():
            shutil.copyfile(graded / "report.html", results / "report.html")
    after = fingerprint(source)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    if changed:
        result = tampered_result(config["assignment"], changed)
        print(f"the submission changed the grader's files: {', '.join(changed[:10])}")
    defences = run.get("defences", {})
    result["execution_time"] = round(time.monotonic() - started, 2)
    result["extra_data"] = {"assignment": config["assignment"], "harness": config.get("harness", ""),
                            "data": config.get("data", {}).get("kind", ""),
                            "weights": {w["model"]: w["kind"] for w in config.get("weights", [])},
                            "defences": defences, "status": row["status"]}
    (results / "results.json").write_text(json.dumps(result, indent=2))
    print(f"{config['assignment']}: {result['score']:g} points ({row['status']}): {result['output']}")
    print(f"defences active: {'; '.join(defences.get('active', [])) or '-'}")
    print(f"defences missing: {'; '.join(defences.get('missing', [])) or '-'}")
    return result


def tampered_result(assignment_name: str, changed: list[str]) -> dict:
    """Zero, and why: the grade of a submission that changed the grader cannot be trusted."""
    assignment = assignments.load(assignment_name)
    message = ("Not graded: while your code ran, files of the autograder itself changed "
               f"({', '.join(changed[:5])}{' ...' if len(changed) > 5 else ''}). A TA will look at this submission.")
    return {"score": 0.0, "output": message, "visibility": "visible", "stdout_visibility": "hidden",
            "tests": [{"name": f"{t.id} {t.title}", "score": 0.0, "max_score": t.points, "status": "failed",
                       "output": message, "visibility": "visible"} for t in assignment.tasks]}


def _fallback_result(error: str) -> dict:
    return {"score": 0.0, "visibility": "visible", "stdout_visibility": "hidden", "tests": [],
            "output": f"The autograder itself failed and could not grade this submission ({error}); please tell a TA."}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder.lms", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = parser.add_subparsers(dest="action", required=True)
    prepare = actions.add_parser("prepare", help="setup.sh: ready the reference values")
    prepare.add_argument("--check", action="store_true", help="check the bundle, write nothing")
    run = actions.add_parser("run", help="run_autograder: grade ROOT/submission into ROOT/results")
    run.add_argument("--root", type=Path, default=Path(os.environ.get("AUTOGRADER_ROOT", "/autograder")))
    args = parser.parse_args(argv)
    source = Path.cwd()
    if args.action == "prepare":
        try:
            print(take_over_reference(source, _bundle_config(source), check_only=args.check))
        except BundleError as error:
            print(f"autograder.lms prepare: {error}", file=sys.stderr)
            return 2
        return 0
    root = args.root.resolve()
    try:
        run_submission(root)
    except Exception as error:  # noqa: BLE001 - Gradescope must get a results.json whatever happened
        traceback.print_exc()   # stdout/stderr are shown to instructors only
        (root / "results").mkdir(parents=True, exist_ok=True)
        (root / "results" / "results.json").write_text(json.dumps(_fallback_result(
            f"{type(error).__name__}: {str(error)[:300]}"), indent=2))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
