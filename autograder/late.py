"""The late policy: a course's deadline, penalty per late day and cut-off, applied to a grade.

The rules live beside the graders in `graders/<assignment>/course.toml` (its comments are the
reference of the format). The submission times come from the LMS: a TA's export `id,submitted_at`
(`grade.py batch ... --submission-times times.csv`), or, in the Gradescope container,
`/autograder/submission_metadata.json` (`gradescope_lateness`).

Days late. At or before the deadline a submission is on time (0 days). After it, every started
24 hours counts one day: days = ceil((submitted - deadline) / 24 h). One second late is 1 day, 24 h
late is 1 day, 24 h and one second is 2 days. The hours are elapsed time (both instants in UTC), so a
change to or from daylight saving time between the deadline and the submission moves nothing.

Penalty. `penalty_percent_per_day` x days, at most 100 %, taken off the raw score (the points the
checks and the TA's marks give): final = raw x (1 - penalty / 100).
Cut-off. A submission more than `cutoff_days` x 24 h after the deadline is not accepted: it is still
graded and listed, and scored 0 with the reason.
A missing time is never guessed (not from file dates either): no penalty is applied and the
gradebook and the batch's output say so.
"""
from __future__ import annotations

import csv
import io
import json
import re
import tomllib
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .assignments import GRADERS
from .intake import compile_id_pattern

DAY = timedelta(hours=24)
GRADESCOPE_METADATA = Path("/autograder/submission_metadata.json")
LATE_KEYS = {"deadline", "timezone", "penalty_percent_per_day", "cutoff_days"}
NOT_CHECKED = "not checked (no --submission-times)"


class CourseRuleError(ValueError):
    """A course.toml, submission-times file or Gradescope metadata that cannot be used; says why."""


@dataclass(frozen=True)
class LatePolicy:
    deadline: datetime | None = None      # an aware instant; None: no deadline, nothing is late
    zone: tzinfo | None = None            # the course's zone: times shown in it, times without offset read in it
    penalty_percent_per_day: float = 0.0
    cutoff: datetime | None = None        # an aware instant; after it nothing is accepted

    @property
    def display_zone(self) -> tzinfo | None:
        return self.zone or (self.deadline.tzinfo if self.deadline else None)


@dataclass(frozen=True)
class CourseConfig:
    assignment: str
    late: LatePolicy
    id_pattern: str | None = None         # regex with a group `id`; None: the entry name without extension
    notebook: str | None = None           # glob on a notebook's path: picks this assignment's one of several


# -- times --------------------------------------------------------------------------------------
def parse_time(value, zone: tzinfo | None, what: str) -> datetime:
    """An aware datetime from ISO 8601 text (or a TOML datetime); a time without offset is read in `zone`."""
    if isinstance(value, datetime):
        moment, text = value, value.isoformat()
    else:
        text = str(value).strip()
        # A date alone would mean midnight at its start: never what a deadline or a submission means.
        if not re.match(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}", text):
            raise CourseRuleError(f"{what}: {text!r} is not an ISO 8601 date and time "
                                  "(like 2026-12-11T23:59:00+02:00 or 2026-12-11 23:59)")
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise CourseRuleError(f"{what}: {text!r} is not an ISO 8601 date and time "
                                  "(like 2026-12-11T23:59:00+02:00 or 2026-12-11 23:59)") from None
    if moment.tzinfo is None:
        if zone is None:
            raise CourseRuleError(f"{what}: {text!r} has no UTC offset and no course time zone is set "
                                  "(timezone = \"Europe/Athens\" in course.toml, or write the offset: +02:00)")
        moment = moment.replace(tzinfo=zone)
    return moment


def days_late(submitted: datetime, deadline: datetime) -> int:
    """0 at or before the deadline, else the number of started 24-hour periods after it."""
    late = submitted.astimezone(timezone.utc) - deadline.astimezone(timezone.utc)
    if late <= timedelta(0):
        return 0
    return -(-late // DAY)   # ceil, exact: timedelta // timedelta is an integer


def show(moment: datetime, zone: tzinfo | None) -> str:
    """2026-12-11 23:59:00 EET: to the second, because one second can make a day."""
    local = moment.astimezone(zone) if zone else moment
    return local.strftime("%Y-%m-%d %H:%M:%S %Z").strip()


# -- one submission -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Lateness:
    """How late one submission came and what it costs."""
    submitted_at: datetime | None         # None: the LMS gave no time for it
    policy: LatePolicy

    @property
    def days_late(self) -> int | None:
        if self.submitted_at is None or self.policy.deadline is None:
            return None
        return days_late(self.submitted_at, self.policy.deadline)

    @property
    def past_cutoff(self) -> bool:
        return (self.submitted_at is not None and self.policy.cutoff is not None
                and self.submitted_at.astimezone(timezone.utc) > self.policy.cutoff.astimezone(timezone.utc))

    @property
    def penalty_percent(self) -> float:
        if self.past_cutoff:
            return 100.0
        return min(100.0, (self.days_late or 0) * self.policy.penalty_percent_per_day)

    def final(self, raw: float) -> float:
        return round(raw * (1 - self.penalty_percent / 100), 4)

    @property
    def note(self) -> str:
        """The gradebook's reason, for the TA."""
        days, zone = self.days_late, self.policy.display_zone
        if self.policy.deadline is None:
            return "no deadline configured"
        if self.submitted_at is None:
            return "no submission time: no late penalty applied (check the LMS)"
        if self.past_cutoff:
            return (f"past the cut-off: {_days(days)} late, nothing accepted after "
                    f"{show(self.policy.cutoff, zone)}; scored 0")
        if days == 0:
            return "on time"
        if self.penalty_percent == 0:
            return f"{_days(days)} late: no late penalty for this assignment"
        return f"{_days(days)} late: {self.penalty_percent:g}% penalty"

    def sentence(self, raw: float | None = None, max_score: float | None = None) -> str:
        """One line for the student; with the raw and maximum scores, the final score too."""
        zone, deadline, days = self.policy.display_zone, self.policy.deadline, self.days_late
        if deadline is None:
            return "No deadline is set for this assignment: no late penalty."
        if self.submitted_at is None:
            return ("The grader was not given your submission time, so no late penalty was applied; "
                    "a TA will check it.")
        when = f"Submitted {show(self.submitted_at, zone)}"
        scores = raw is not None and max_score is not None
        if days == 0:
            return f"{when}, on time (deadline {show(deadline, zone)})."
        late = f"{when}, {_days(days)} after the deadline ({show(deadline, zone)})"
        if self.past_cutoff:
            would = f" (the checks gave {raw:g} / {max_score:g})" if scores else ""
            return (f"{late}: past the cut-off ({show(self.policy.cutoff, zone)}), so it is not accepted "
                    f"and scores 0{would}.")
        if self.penalty_percent == 0:
            return f"{late}; this assignment has no late penalty."
        change = f": {raw:g} → {self.final(raw):g} / {max_score:g} points" if scores else ""
        return f"{late}: {self.penalty_percent:g}% late penalty{change}."

    def gradebook_fields(self) -> dict:
        zone, submitted = self.policy.display_zone, self.submitted_at
        shown = (submitted.astimezone(zone) if zone else submitted).isoformat() if submitted else ""
        return {"days_late": self.days_late, "penalty_pct": self.penalty_percent, "submitted_at": shown,
                "late": self.note}


def _days(n: int) -> str:
    return f"{n} day" if n == 1 else f"{n} days"


def gradebook_columns(lateness: Lateness | None, raw: float) -> dict:
    """raw, days_late, penalty_pct, total (the final score), submitted_at, late (the reason)."""
    if lateness is None:
        return {"raw": raw, "days_late": None, "penalty_pct": None, "total": raw, "submitted_at": "",
                "late": NOT_CHECKED}
    return {"raw": raw, **lateness.gradebook_fields(), "total": lateness.final(raw)}


def batch_summary(rows: list[dict]) -> list[str]:
    """What a TA must know after a batch: who came past the cut-off, whose time is missing, whose
    file name gave no student id. Rows carry their Lateness under "_late" (None: not checked)."""
    lines = []
    unnamed = [row["id"] for row in rows if not row.get("student")]
    if unnamed:
        lines.append(f"no student id (the file name does not match the id pattern): {_listed(unnamed)}")
    checked = [row for row in rows if row.get("_late") is not None]
    if not checked:
        return lines + ["late policy: not checked (give the LMS's times with --submission-times)"]
    past = [row["id"] for row in checked if row["_late"].past_cutoff]
    missing = [row["id"] for row in checked if row["_late"].submitted_at is None]
    late = [row for row in checked if (row["_late"].days_late or 0) > 0 and not row["_late"].past_cutoff]
    penalised = sum(row["_late"].penalty_percent > 0 for row in late)
    lines.append(f"late policy: {len(checked) - len(late) - len(past) - len(missing)} on time, {len(late)} late "
                 f"({penalised} with a penalty), {len(past)} past the cut-off, {len(missing)} without a time")
    if past:
        lines.append(f"past the cut-off, scored 0: {_listed(past)}")
    if missing:
        lines.append(f"no submission time (no penalty applied; check the LMS): {_listed(missing)}")
    return lines


def _listed(ids: list[str], most: int = 20) -> str:
    return ", ".join(ids[:most]) + (f" and {len(ids) - most} more" if len(ids) > most else "")


# -- course.toml --------------------------------------------------------------------------------
def load_course(assignment: str, graders: Path = GRADERS) -> CourseConfig:
    """graders/<assignment>/course.toml; without one, no deadline and the default id."""
    path = Path(graders) / assignment / "course.toml"
    if not path.is_file():
        return CourseConfig(assignment, LatePolicy())
    try:
        config = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise CourseRuleError(f"{path}: not valid TOML ({error})") from None
    _no_unknown_keys(path, "", config, {"late", "names"})
    names = config.get("names", {})
    _no_unknown_keys(path, "[names] ", names, {"id_pattern", "notebook"})
    pattern = names.get("id_pattern")
    try:
        compile_id_pattern(pattern)
    except ValueError as error:
        raise CourseRuleError(f"{path}: {error}") from None
    notebook = names.get("notebook")
    if notebook is not None and (not isinstance(notebook, str) or not notebook.strip()):
        raise CourseRuleError(f"{path}: [names] notebook must be a file-name pattern like \"*wikiart*\", "
                              f"not {notebook!r}")
    return CourseConfig(assignment, late_policy(config.get("late", {}), f"{path} [late]"), pattern, notebook)


def late_policy(table: dict, where: str = "[late]") -> LatePolicy:
    """A LatePolicy from a course.toml's [late] table, every value checked."""
    _no_unknown_keys(Path(where), "", table, LATE_KEYS)
    zone = None
    if "timezone" in table:
        try:
            zone = ZoneInfo(str(table["timezone"]))
        except (ZoneInfoNotFoundError, ValueError):
            raise CourseRuleError(f"{where}: timezone {table['timezone']!r} is not an IANA time zone name "
                                  "(like Europe/Athens or America/New_York)") from None
    deadline = parse_time(table["deadline"], zone, f"{where} deadline") if "deadline" in table else None
    penalty = _number(table, "penalty_percent_per_day", where, 0.0, 100.0)
    cutoff_days = _number(table, "cutoff_days", where, 0.0, None)
    if deadline is None and (penalty or cutoff_days is not None):
        raise CourseRuleError(f"{where}: a penalty or a cut-off needs a deadline")
    cutoff = deadline.astimezone(timezone.utc) + cutoff_days * DAY if cutoff_days is not None else None
    return LatePolicy(deadline, zone, penalty or 0.0, cutoff)


def _number(table: dict, key: str, where: str, low: float, high: float | None) -> float | None:
    if key not in table:
        return None
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < low \
            or (high is not None and value > high):
        bounds = f"between {low:g} and {high:g}" if high is not None else f"at least {low:g}"
        raise CourseRuleError(f"{where}: {key} must be a number {bounds}, not {value!r}")
    return float(value)


def _no_unknown_keys(path: Path, table: str, values: dict, known: set[str]) -> None:
    unknown = sorted(set(values) - known)
    if unknown:
        raise CourseRuleError(f"{path}: {table}unknown key(s) {', '.join(unknown)} "
                              f"(known: {', '.join(sorted(known))})")


# -- the LMS's times ------------------------------------------------------------------------------
def read_submission_times(path: Path, zone: tzinfo | None) -> dict[str, datetime | None]:
    """id -> submission time from a TA's CSV export (`id,submitted_at`; other columns ignored).

    An empty `submitted_at` is kept as None (reported as missing, never guessed). A time that cannot
    be read, an id listed twice or a missing column stops the batch before any grading.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")   # utf-8-sig: spreadsheets write a BOM
    except FileNotFoundError:
        raise CourseRuleError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise CourseRuleError(f"{path}: cannot be read as UTF-8 text ({error})") from None
    reader = csv.DictReader(io.StringIO(text))
    reader.fieldnames = [name.strip().lower() for name in reader.fieldnames or []]
    if not {"id", "submitted_at"} <= set(reader.fieldnames):
        raise CourseRuleError(f"{path}: needs the columns id,submitted_at "
                              f"(its header is {','.join(reader.fieldnames) or 'empty'})")
    times: dict[str, datetime | None] = {}
    problems = []
    for row in reader:
        line = reader.line_num
        sid, value = (row.get("id") or "").strip(), (row.get("submitted_at") or "").strip()
        if not sid:
            problems.append(f"line {line}: no id")
        elif sid in times:
            problems.append(f"line {line}: {sid!r} is listed twice (keep the submission you grade)")
        else:
            try:
                times[sid] = parse_time(value, zone, f"line {line}") if value else None
            except CourseRuleError as error:
                problems.append(str(error))
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise CourseRuleError(f"{path}: " + "; ".join(problems[:5]) + more)
    return times


def lateness_for(policy: LatePolicy, times: dict[str, datetime | None], *keys: str | None) -> Lateness:
    """The Lateness of the submission known in `times` under the first of `keys` found there
    (the student id, then the entry name); no time when none is."""
    found = next((key for key in keys if key and key in times), None)
    return Lateness(times[found] if found else None, policy)


# -- Gradescope ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class GradescopeTimes:
    submitted_at: datetime
    due_date: datetime | None
    late_due_date: datetime | None


def times_from_gradescope_metadata(path: Path = GRADESCOPE_METADATA) -> GradescopeTimes:
    """The submission time and due dates of Gradescope's `submission_metadata.json`: its documented
    `created_at` and `assignment.due_date` / `assignment.late_due_date` (ISO 8601 with offset)."""
    path = Path(path)
    try:
        metadata = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CourseRuleError(f"{path}: no Gradescope submission metadata here") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CourseRuleError(f"{path}: cannot be read as JSON ({error})") from None
    if not isinstance(metadata, dict) or not metadata.get("created_at"):
        raise CourseRuleError(f"{path}: has no created_at (the submission time)")
    assignment = metadata.get("assignment") if isinstance(metadata.get("assignment"), dict) else {}

    def when(value, what):
        return parse_time(value, None, f"{path}: {what}") if value else None

    return GradescopeTimes(when(metadata["created_at"], "created_at"), when(assignment.get("due_date"), "due_date"),
                           when(assignment.get("late_due_date"), "late_due_date"))


def gradescope_policy(policy: LatePolicy, times: GradescopeTimes) -> LatePolicy:
    """The course's policy with Gradescope's dates: `due_date` is the deadline; `late_due_date`, when set,
    the cut-off, else the course's cut-off stays as far after the deadline as in course.toml."""
    deadline = times.due_date or policy.deadline
    if deadline is None:
        return replace(policy, cutoff=None)   # nothing is late without a deadline
    if times.late_due_date is not None:
        cutoff = times.late_due_date
    elif policy.cutoff is not None and policy.deadline is not None:
        cutoff = deadline.astimezone(timezone.utc) + (policy.cutoff - policy.deadline.astimezone(timezone.utc))
    else:
        cutoff = None   # neither Gradescope nor course.toml sets one
    return replace(policy, deadline=deadline, cutoff=cutoff)


def gradescope_lateness(assignment: str, metadata: Path = GRADESCOPE_METADATA) -> Lateness:
    """For the LMS's run_autograder: pass the result to SubmissionGrader.grade(..., lateness=...)."""
    times = times_from_gradescope_metadata(metadata)
    return Lateness(times.submitted_at, gradescope_policy(load_course(assignment).late, times))
