"""Matplotlib pictures for the reports, embedded as base64 PNG so a report needs no server.

Figures are made with matplotlib's object API, not pyplot: nothing is kept in pyplot's global figure
list, so a figure whose drawing fails leaks nothing in a worker that grades hundreds of entries.
"""
from __future__ import annotations

import base64
import functools
import io
import threading

import numpy as np
from matplotlib.figure import Figure

# Matplotlib is not thread-safe (its font cache is shared): a batch worker draws a report on one
# thread while the next entry's own curves are drawn on another. One picture at a time.
_DRAWING = threading.Lock()


def _one_at_a_time(draw):
    @functools.wraps(draw)
    def drawn(*args, **kwargs):
        with _DRAWING:
            return draw(*args, **kwargs)
    return drawn


def png_base64(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def colour_scale(*matrices) -> tuple[float | None, float | None]:
    """One colour scale for matrices drawn side by side: their lowest and highest finite values, widened
    outwards to multiples of a round step (0.02 for a span between 0.1 and 1, 0.2 between 1 and 10...).
    Two matrices that differ only in their last digits (a correct answer, the reference) get the same
    scale, so a reference picture drawn once serves every such entry. (None, None): nothing finite."""
    values = np.concatenate([np.asarray(m, dtype=float).ravel() for m in matrices if m is not None] or [[]])
    values = values[np.isfinite(values)]
    if not values.size:
        return None, None
    low, high = float(values.min()), float(values.max())
    span = high - low
    if not 0 < span < float("inf"):
        return low, high   # one value: matplotlib widens a flat scale itself
    step = 2.0 * 10.0 ** (np.floor(np.log10(span)) - 1)
    return float(np.floor(low / step) * step), float(np.ceil(high / step) * step)


@_one_at_a_time
def matrix_picture(matrix: np.ndarray, title: str, labels: list[str], vmin=None, vmax=None) -> str:
    n_rows, n_cols = matrix.shape
    size = min(6.0, 2.5 + 0.3 * max(n_rows, n_cols))
    figure = Figure(figsize=(size, size))
    axes = figure.subplots()
    image = axes.imshow(matrix, cmap="viridis", vmin=vmin, vmax=vmax)
    axes.set_title(title)
    if labels and len(labels) == n_rows == n_cols:
        axes.set_xticks(range(n_cols), labels, rotation=90, fontsize=8)
        axes.set_yticks(range(n_rows), labels, fontsize=8)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    return png_base64(figure)


def reference_matrix_picture(matrix: np.ndarray, title: str, labels: list[str], vmin=None, vmax=None) -> str:
    """matrix_picture, kept for the next entries: a batch worker draws the same reference on the same
    scale for nearly every entry (120 ms of CPU a picture, which a second worker is short of)."""
    matrix = np.ascontiguousarray(matrix)
    return _kept_picture(matrix.tobytes(), matrix.shape, matrix.dtype.str, title, tuple(labels or ()), vmin, vmax)


@functools.lru_cache(maxsize=16)   # the reference's own outputs: a few per assignment, each small
def _kept_picture(data: bytes, shape: tuple, dtype: str, title: str, labels: tuple, vmin, vmax) -> str:
    return matrix_picture(np.frombuffer(data, dtype=dtype).reshape(shape), title, list(labels), vmin, vmax)


@_one_at_a_time
def histogram_picture(scores: list[float], max_score: float) -> str:
    figure = Figure(figsize=(6, 3))
    axes = figure.subplots()
    bins = np.linspace(0, max_score if max_score > 0 else 1, 11)
    axes.hist(scores, bins=bins, color="#4a7bb7", edgecolor="white")
    axes.set_xlabel("score")
    axes.set_ylabel("submissions")
    axes.set_title("Score distribution")
    return png_base64(figure)


CURVE_PANELS = (("loss", "Loss"), ("acc", "Accuracy"), ("", "Other scalars"))
MOST_LINES = 8   # per panel: more make an unreadable legend


def curve_panels(names) -> list[tuple[str, list[str]]]:
    """Scalar series grouped the way the wikiart grader reads tags: 'loss' in the name, 'acc' in the
    name, the rest; (panel title, names) for each panel that has any."""
    panels: dict[str, list[str]] = {title: [] for _word, title in CURVE_PANELS}
    for name in sorted(names):
        title = next(title for word, title in CURVE_PANELS if word in name.lower())
        panels[title].append(name)
    return [(title, members) for title, members in panels.items() if members]


@_one_at_a_time
def curves_picture(series: dict[str, list[tuple[int, float]]], title: str | None = None) -> str:
    """Line charts of TensorBoard-style scalar series (tag -> [(step, value), ...]), one panel per kind;
    validation/test series dashed. Used for the student's own logs and for the harness's run alike, at
    a size that puts the two side by side in the report."""
    panels = curve_panels(name for name, points in series.items() if points)
    if not panels:
        raise ValueError("no series to draw")
    figure = Figure(figsize=(3.0 * len(panels), 2.9))
    axes = figure.subplots(1, len(panels), squeeze=False)
    for ax, (panel, names) in zip(axes[0], panels):
        for name in names[:MOST_LINES]:
            points = [(s, v) for s, v in series[name] if np.isfinite(v)]
            steps, values = [s for s, _v in points], [v for _s, v in points]
            validation = any(word in name.lower() for word in ("val", "test"))
            ax.plot(steps, values, linestyle="--" if validation else "-", linewidth=1.4,
                    marker="o" if len(points) <= 40 else None, markersize=3, label=_label(name))
        if len(names) > MOST_LINES:
            ax.text(0.99, 0.01, f"+{len(names) - MOST_LINES} more not drawn", transform=ax.transAxes,
                    ha="right", va="bottom", fontsize=7, color="#666")
        ax.set_title(panel, fontsize=10)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.ticklabel_format(axis="y", useOffset=False)   # a loss of 1.1246 reads better than +1.124 and 6e-4
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    if title:
        figure.suptitle(_label(title, 90), fontsize=10)
    figure.tight_layout()
    return png_base64(figure)


def _label(text: str, most: int = 42) -> str:
    """A student's tag as plain text: '$' would start matplotlib's mathtext (which can fail to parse),
    and a legend drops labels that start with '_'."""
    text = str(text) if len(str(text)) <= most else "…" + str(text)[-(most - 1):]
    return (" " if text.startswith("_") else "") + text.replace("$", r"\$")
