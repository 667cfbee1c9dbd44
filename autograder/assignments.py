"""The assignments the harness knows: each is a folder graders/<name>/ holding

    assignment.toml   course config: tasks, points, models, limits, a spare kernel's warm imports
    fixture_data.py   build(data_dir), build_probes(probe_dir): fixture data and hidden inputs
    harvest.py        runs in the sandbox after the student's cells; exports plain values
    expected.py       the reference's values under the same names (grader's process, cached)
    test_*.py         the pytest graders, one or more per task; test_<name>.py may define
                      requested_values(student, reference): which of the harvest's on-request
                      values (its costly second step) they need for this student
"""
from __future__ import annotations

import functools
import importlib
import importlib.util
import tomllib
from dataclasses import dataclass
from pathlib import Path

from .artefacts import ON_REQUEST
from .sandbox import GiB, Limits

REPO = Path(__file__).resolve().parent.parent
GRADERS = REPO / "graders"
HARVEST_COMMON = GRADERS / "harvest_common.py"   # sent into the kernel ahead of every harvest.py


@dataclass(frozen=True)
class Task:
    id: str
    title: str
    points: float
    manual: bool = False


@dataclass(frozen=True)
class Assignment:
    name: str
    title: str
    tasks: tuple[Task, ...]
    models: tuple[str, ...]
    data_name: str
    limits: Limits
    warm_imports: tuple[str, ...] = ("torch", "torchvision")   # what a batch's spare kernel imports ahead
    student_logs: bool = False   # the handout asks for TensorBoard logs: the report draws the student's own

    @property
    def folder(self) -> Path:
        return GRADERS / self.name

    @property
    def max_points(self) -> float:
        return sum(t.points for t in self.tasks)

    def task(self, task_id: str) -> Task:
        return next(t for t in self.tasks if t.id == task_id)

    def module(self, part: str):
        """graders.<name>.<part> (fixture_data, expected), imported in the grader's process only."""
        return importlib.import_module(f"graders.{self.name}.{part}")

    def requested_values(self, student, reference) -> set[str]:
        """Which of the harvest's on-request values (still offered in `student`, the first step's
        export) the graders need for this student; all of them when the graders do not say."""
        offered = {name for name in student.entries if student.status(name) == ON_REQUEST}
        decide = _graders_requested_values(self.name) if offered else None
        return offered if decide is None else offered & set(decide(student, reference))

    @property
    def harvest_source(self) -> str:
        """What runs in the kernel after the student's cells: the harvests' shared helpers, then
        the assignment's harvest.py (one text: a run kept in the run cache is keyed on all of it)."""
        return HARVEST_COMMON.read_text() + "\n\n" + (self.folder / "harvest.py").read_text()

    def source_files(self) -> list[Path]:
        """Files whose change invalidates the cached reference values."""
        return [REPO / "reference" / f"{self.name}.py", self.folder / "expected.py",
                self.folder / "fixture_data.py", HARVEST_COMMON, self.folder / "harvest.py"]


@functools.cache
def _graders_requested_values(name: str):
    """test_<name>.py's requested_values, from a private import of the module (pytest imports the
    graders itself, with its assertion rewriting, under another name)."""
    path = GRADERS / name / f"test_{name}.py"
    spec = importlib.util.spec_from_file_location(f"_autograder_requests_of_{name}", path)
    if spec is None or not path.is_file():
        return None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, "requested_values", None)


def names() -> list[str]:
    return sorted(p.parent.name for p in GRADERS.glob("*/assignment.toml"))


def load(name: str, **limit_overrides) -> Assignment:
    path = GRADERS / name / "assignment.toml"
    if not path.is_file():
        raise KeyError(f"unknown assignment {name!r}; known: {', '.join(names())}")
    config = tomllib.loads(path.read_text())
    limits_config = dict(config.get("limits", {}))
    memory = limits_config.pop("memory_gib", 4)
    limits = Limits(memory_bytes=int(memory * GiB), **limits_config)
    overrides = {k: v for k, v in limit_overrides.items() if v is not None}
    if overrides:
        limits = Limits(**{**limits.to_dict(), **overrides})
    tasks = tuple(Task(task_id, spec["title"], float(spec["points"]), bool(spec.get("manual", False)))
                  for task_id, spec in config["tasks"].items())
    return Assignment(name=name, title=config["title"], tasks=tasks, models=tuple(config.get("models", [])),
                      data_name=config.get("data", name), limits=limits,
                      warm_imports=tuple(config.get("warm_imports", Assignment.warm_imports)),
                      student_logs=bool(config.get("student_logs", False)))
