"""Reports: the student's feedback page, Gradescope's results.json, the gradebook and batch index."""
from .gradebook import write_gradebook
from .gradescope import results_json, write_results_json
from .html import render_report, write_report

__all__ = ["write_gradebook", "results_json", "write_results_json", "render_report", "write_report"]
