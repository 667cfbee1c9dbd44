"""The safe-format wall between the sandbox and the grader: encode (inside), decode (outside)."""
from pathlib import Path

from .decode import Artefacts, ForeignObject, NotCollected, copy_out
from .encode import ON_REQUEST

ENCODER_SOURCE = (Path(__file__).with_name("encode.py")).read_text()

__all__ = ["Artefacts", "ForeignObject", "NotCollected", "copy_out", "ENCODER_SOURCE", "ON_REQUEST"]
