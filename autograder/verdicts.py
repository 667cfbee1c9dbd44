"""What grading produces: one verdict per grader test, gathered into a submission's grade."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Verdict:
    task: str
    name: str              # "F3 network: ImageNet ResNet-18 ..." (starts with the task id)
    score: float
    max_score: float
    status: str            # passed | failed
    message: str = ""
    visibility: str = "visible"


@dataclass
class Figure:
    """Pictures for the report: the student's value beside the reference's."""
    title: str
    student: np.ndarray | None
    reference: np.ndarray | None
    labels: list[str] = field(default_factory=list)
    kind: str = "matrix"   # matrix | image | curves
    series: dict[str, list[tuple[int, float]]] = field(default_factory=dict)   # curves: tag -> [(step, value)]
    visibility: str = "visible"   # the drawing check's: a picture of hidden inputs waits like its message


class Figures:
    """The `figures` fixture: graders hand the report their pictures through it."""

    def __init__(self):
        self.items: list[Figure] = []
        self.visibility = "visible"   # set by the grading plugin to the running check's

    def matrices(self, title, student, reference, labels=()):
        self.items.append(Figure(title, _plain(student), _plain(reference), list(labels), "matrix",
                                 visibility=self.visibility))

    def images(self, title, student, reference, labels=()):
        self.items.append(Figure(title, _plain(student), _plain(reference), list(labels), "image",
                                 visibility=self.visibility))

    def curves(self, title, series):
        """Scalar series {tag: [(step, value), ...]} of a run the harness made (wikiart: what the
        student's train() logged); the report draws them beside the student's own TensorBoard logs."""
        plain = {}
        try:
            items = list(dict(series).items())[:24]
        except (TypeError, ValueError):
            return   # not a mapping: nothing to draw, and no reason to fail the grader's check
        for tag, points in items:
            try:
                plain[str(tag)] = [(int(step), float(value)) for step, value in list(points)[:2000]]
            except (TypeError, ValueError, OverflowError):
                continue   # a series that is not (step, value) pairs is not drawn
        if any(plain.values()):
            self.items.append(Figure(title, None, None, kind="curves", series=plain, visibility=self.visibility))


def _plain(value):
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf" and value.ndim == 2 and value.size <= 4_000_000:
        return value.astype(np.float64)
    return None


@dataclass
class Grade:
    submission_id: str
    assignment: str
    verdicts: list[Verdict] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    status: str = "graded"     # graded | not a submission | harness error
    message: str = ""          # a sentence for the student about what happened overall

    @property
    def score(self) -> float:
        return round(sum(v.score for v in self.verdicts), 4)

    @property
    def max_score(self) -> float:
        return round(sum(v.max_score for v in self.verdicts), 4)

    def task_scores(self) -> dict[str, float]:
        scores: dict[str, float] = {}
        for verdict in self.verdicts:
            scores[verdict.task] = round(scores.get(verdict.task, 0.0) + verdict.score, 4)
        return scores
