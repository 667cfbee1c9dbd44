"""The students' self-check bundle (`grade.py student-bundle`): what it holds, and what it must not.

It must hold the template, the fixture data and a self-check that runs with one command; it must
not hold the reference solution (no reference module, no function body of reference/<a>.py that
the template does not already give), the graders or their hidden inputs, or any cached output
array. The slow tests run the self-check as a student would, from the unpacked bundle, on correct,
buggy, template and broken notebooks, and time it.
"""
from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ASSIGNMENTS = ["fruits", "scene15", "inception", "catsdogs", "wikiart", "saliency"]
ARRAY_SUFFIXES = {".npy", ".npz", ".pt", ".pth", ".pkl", ".pickle", ".safetensors", ".h5", ".joblib"}
FRUITS_SECONDS = 60   # the budget for a student's laptop; this CI machine is no faster


def build(assignment: str, out: Path, *extra: str) -> Path:
    completed = subprocess.run([sys.executable, "grade.py", "student-bundle", "--assignment", assignment,
                                "--out", str(out), *extra], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return out / f"{assignment}_student.zip"


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("student-bundles")
    return {a: build(a, out) for a in ASSIGNMENTS}


def contents(zip_path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(zip_path) as bundle:
        return {info.filename: bundle.read(info) for info in bundle.infolist() if not info.is_dir()}


def function_bodies(source: str) -> dict[str, str]:
    """ast dump of each function's body (docstring left out) -> the function's name. Trivial bodies
    (`pass`, `...`, `return name`) say nothing about a solution and are left out."""
    bodies = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                body = body[1:]
            if not body or (len(body) == 1 and isinstance(body[0], ast.Pass)) or (
                    len(body) == 1 and isinstance(body[0], ast.Return) and isinstance(body[0].value, (ast.Name, type(None)))):
                continue
            bodies[ast.dump(ast.Module(body=body, type_ignores=[]))] = node.name
    return bodies


def code_of(name: str, data: bytes) -> list[str]:
    """The Python sources inside one bundle file: a module, or a notebook's code cells."""
    if name.endswith(".py"):
        return [data.decode()]
    if name.endswith(".ipynb"):
        cells = json.loads(data)["cells"]
        return ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    return []


def template_bodies(assignment: str) -> set[str]:
    """Function bodies the template itself gives the student (helpers such as load_image)."""
    given = set()
    for source in code_of(f"{assignment}.ipynb", (REPO / "templates" / f"{assignment}.ipynb").read_bytes()):
        try:
            given |= set(function_bodies(source))
        except SyntaxError:
            continue
    return given


def secret_bodies_in(files: dict[str, bytes], assignment: str) -> list[tuple[str, str]]:
    """(bundle file, secret function) for every function body of the reference, the graders, the
    harvest or the expected values found in the bundle, whatever its name, unless the template
    already gives it."""
    secret = {}
    for path in [REPO / "reference" / f"{assignment}.py", *sorted((REPO / "graders" / assignment).glob("*.py"))]:
        secret.update({k: f"{path.name}:{v}" for k, v in function_bodies(path.read_text()).items()})
    for given in template_bodies(assignment):
        secret.pop(given, None)
    assert secret, "nothing to compare with"
    found = []
    for name, data in files.items():
        for source in code_of(name, data):
            try:
                found += [(name, secret[b]) for b in function_bodies(source) if b in secret]
            except SyntaxError:
                continue
    return found


def test_the_leak_detector_finds_a_renamed_reference_function():
    """The comparison is by body, not by name: a copied `extract` under another name is found."""
    source = (REPO / "reference" / "fruits.py").read_text()
    tree = ast.parse(source)
    extract = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "extract")
    extract.name, extract.decorator_list = "my_features", []
    leaked = {"fruits/helpers.py": ast.unparse(extract).encode(), "fruits/fine.py": b"def f(x):\n    return x + 1\n"}
    assert secret_bodies_in(leaked, "fruits") == [("fruits/helpers.py", "fruits.py:extract")]


# -- what the bundle holds -----------------------------------------------------------------------
@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_bundle_has_template_data_and_selfcheck(bundles, assignment):
    files = contents(bundles[assignment])
    root = f"{assignment}/"
    assert all(name.startswith(root) for name in files)
    assert files[f"{root}{assignment}.ipynb"] == (REPO / "templates" / f"{assignment}.ipynb").read_bytes()
    for part in ("selfcheck.py", "README.txt", "selfcheck/runner.py", "selfcheck/kernel_side.py",
                 "selfcheck/weights.py", f"selfcheck/public/{assignment}.py", "selfcheck/assignment.json"):
        assert f"{root}{part}" in files, part
    others = [n for n in files if n.startswith(f"{root}selfcheck/public/") and not n.endswith(f"/{assignment}.py")]
    assert not others, "only this assignment's checks ship"
    data_name = json.loads(files[f"{root}selfcheck/assignment.json"])["data"]
    data = REPO / "data" / data_name
    shipped = {n[len(f"{root}data/{data_name}/"):]: d for n, d in files.items() if n.startswith(f"{root}data/")}
    expected = {p.relative_to(data).as_posix(): p.read_bytes() for p in data.rglob("*") if p.is_file()}
    assert shipped == expected, "the bundle's data is the fixture data, file for file"


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_bundle_holds_no_reference_no_graders_no_hidden_inputs(bundles, assignment):
    files = contents(bundles[assignment])
    forbidden_names = [n for n in files if re.search(r"(^|/)(reference|graders|probes)(/|$)|(^|/)(expected|harvest|"
                                                     r"fixture_data|test_[^/]*)\.py$", n)]
    assert not forbidden_names, forbidden_names
    secret_files = [REPO / "reference" / f"{assignment}.py", *sorted((REPO / "graders" / assignment).glob("*.py"))]
    secret_bytes = {path.read_bytes() for path in secret_files}
    assert not [n for n, d in files.items() if d in secret_bytes], "a reference or grader file ships verbatim"
    found = secret_bodies_in(files, assignment)
    assert not found, f"reference/grader function bodies in the bundle: {found}"
    imports = []
    for name, data in files.items():
        if name.endswith(".py"):
            for node in ast.walk(ast.parse(data.decode())):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                    imports += [(name, m) for m in modules if m.split(".")[0] in ("autograder", "reference", "graders")]
    assert not imports, f"the self-check must stand alone: {imports}"


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_bundle_holds_no_cached_outputs_and_no_weights(bundles, assignment):
    files = contents(bundles[assignment])
    arrays = [n for n in files if Path(n).suffix.lower() in ARRAY_SUFFIXES]
    assert not arrays, f"arrays or checkpoints in a default student bundle: {arrays}"
    assert not any("torch_home" in n for n in files)
    # Nothing the harness computed: no reference value and no probe, under any name.
    cache = REPO / ".cache"
    computed = {hashlib.sha256(p.read_bytes()).hexdigest()
                for folder in [*cache.glob(f"reference/{assignment}/*"), *cache.glob(f"probes/{assignment}*")]
                for p in folder.rglob("*") if p.is_file()}
    assert computed, "run setup first: the reference cache is empty"
    leaked = [n for n, d in files.items() if hashlib.sha256(d).hexdigest() in computed]
    assert not leaked, leaked


def test_with_weights_ships_the_store_checkpoints(tmp_path):
    files = contents(build("fruits", tmp_path, "--with-weights"))
    assert files["fruits/torch_home/hub/checkpoints/resnet18-f37072fd.pth"] == \
        (REPO / ".cache" / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth").read_bytes()
    manifest = json.loads(files["fruits/torch_home/manifest.json"])
    assert set(manifest) == {"resnet18-f37072fd.pth"}


# -- the self-check, run as a student runs it ------------------------------------------------------
def unpack(zip_path: Path, target: Path) -> Path:
    with zipfile.ZipFile(zip_path) as bundle:
        bundle.extractall(target)
    return target / zip_path.name.removesuffix("_student.zip")


def selfcheck(folder: Path, *args: str, torch_home: Path) -> subprocess.CompletedProcess:
    """`python selfcheck.py ...` in the unpacked bundle, offline weights from torch_home."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TORCH_HOME")}
    env["TORCH_HOME"] = str(torch_home)
    return subprocess.run([sys.executable, "selfcheck.py", *args], cwd=folder, env=env, capture_output=True,
                          text=True, timeout=900)


def table(output: str) -> dict[str, list[str]]:
    """task -> the result words of its rows in the printed table."""
    rows: dict[str, list[str]] = {}
    for line in output.splitlines():
        match = re.match(r"^([A-Z]\d)\s+.*\s(ok|FAILED)$", line)
        if match:
            rows.setdefault(match.group(1), []).append(match.group(2))
    return rows


@pytest.fixture(scope="module")
def fruits_folder(bundles, tmp_path_factory) -> Path:
    return unpack(bundles["fruits"], tmp_path_factory.mktemp("fruits-student"))


@pytest.mark.slow
def test_fruits_selfcheck_on_a_correct_notebook_with_fresh_standins(fruits_folder, tmp_path):
    """The laptop case: no downloaded weights (an empty torch cache), one command, under a minute."""
    (fruits_folder / "mine.ipynb").write_bytes((REPO / "submissions" / "fruits" / "alice_correct.ipynb").read_bytes())
    started = time.monotonic()
    completed = selfcheck(fruits_folder, "mine.ipynb", torch_home=tmp_path / "empty-torch-cache")
    seconds = time.monotonic() - started
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    assert "12 of 12 public checks passed" in completed.stdout
    assert set(table(completed.stdout)) == {f"F{i}" for i in range(1, 9)}
    assert "stand-in weights" in completed.stdout
    assert (fruits_folder / "torch_home" / "hub" / "checkpoints" / "resnet18-f37072fd.pth").is_file()
    assert seconds < FRUITS_SECONDS, f"the fruits self-check took {seconds:.1f} s"
    print(f"\nfruits self-check, stand-ins made: {seconds:.1f} s\n{completed.stdout}")


@pytest.mark.slow
def test_fruits_selfcheck_names_the_broken_task(fruits_folder):
    """A planted bug (accuracy as a percentage) fails F7's public check, and only it."""
    (fruits_folder / "buggy.ipynb").write_bytes((REPO / "tests" / "corpus" / "fruits" / "bug_F7_percentage.ipynb").read_bytes())
    completed = selfcheck(fruits_folder, "buggy.ipynb", torch_home=fruits_folder / "torch_home")
    assert completed.returncode == 1
    rows = table(completed.stdout)
    assert rows["F7"] == ["FAILED"] and all(r == ["ok"] * len(r) for t, r in rows.items() if t != "F7"), rows
    assert "expected a fraction between 0 and 1" in completed.stdout


@pytest.mark.slow
def test_fruits_selfcheck_on_the_template_says_what_is_left_to_do(fruits_folder):
    completed = selfcheck(fruits_folder, torch_home=fruits_folder / "torch_home")   # default: fruits.ipynb
    assert completed.returncode == 1
    assert "0 of 12 public checks passed" in completed.stdout
    assert "`transform` is still None: its TODO is not done yet" in completed.stdout
    assert "Traceback" not in completed.stdout + completed.stderr


def test_selfcheck_refuses_a_broken_notebook_with_a_sentence(bundles, tmp_path):
    folder = unpack(bundles["fruits"], tmp_path)
    text = (folder / "fruits.ipynb").read_text()
    (folder / "broken.ipynb").write_text(text[: len(text) // 2])
    completed = selfcheck(folder, "broken.ipynb", torch_home=tmp_path / "none")
    assert completed.returncode == 2
    assert "broken.ipynb cannot be read" in completed.stderr and "Traceback" not in completed.stderr
    missing = selfcheck(folder, "nowhere.ipynb", torch_home=tmp_path / "none")
    assert missing.returncode == 2 and "is not a file" in missing.stderr


@pytest.mark.slow
@pytest.mark.parametrize("assignment", [a for a in ASSIGNMENTS if a != "fruits"])
def test_selfcheck_passes_the_bundled_correct_example(bundles, assignment, tmp_path):
    """Every public check holds for a correct notebook (weights from the repository's store, so
    that no 528 MB stand-in is made per assignment)."""
    folder = unpack(bundles[assignment], tmp_path)
    (folder / "mine.ipynb").write_bytes((REPO / "submissions" / assignment / "alice_correct.ipynb").read_bytes())
    completed = selfcheck(folder, "mine.ipynb", torch_home=REPO / ".cache" / "torch")
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    assert re.search(r"(\d+) of \1 public checks passed", completed.stdout)
