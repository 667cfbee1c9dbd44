#!/usr/bin/env bash
# One command on a fresh machine: system tools, venv, Python packages, weight store, fixture data,
# reference values, then the bundled example batch. Safe to run again (each step skips what exists).
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}

step() { printf '\n== %s\n' "$*"; }

step "system tools (bubblewrap: the sandbox; chromium: the report screenshot test; unar: .rar submissions; poppler-utils: PDF thumbnails)"
missing=()
command -v bwrap >/dev/null || missing+=(bubblewrap)
command -v chromium >/dev/null || missing+=(chromium)
command -v unar >/dev/null || missing+=(unar)
command -v pdftoppm >/dev/null || missing+=(poppler-utils)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "warning: ${missing[*]} not installed and cannot install them here (not root / no apt-get):"
    echo "         grading still works, with weaker isolation; the report says which defences were active;"
    echo "         without unar a .rar submission's report says it could not be unpacked;"
    echo "         without pdftoppm (poppler-utils) a report lists a student's PDF without its first page."
  fi
fi

step "Python environment (.venv) and the pinned packages of pyproject.toml"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python - > .venv/requirements.txt <<'PY'
import tomllib
print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))
PY
.venv/bin/pip install -q --disable-pip-version-check -r .venv/requirements.txt

step "weight store, fixture data and reference values"
.venv/bin/python grade.py setup

step "grading the bundled example submissions"
.venv/bin/python grade.py batch submissions/fruits --assignment fruits --out out/fruits --workers 2
echo
echo "Reports: out/fruits/<id>/report.html · overview: out/fruits/index.html · gradebook: out/fruits/grades.csv"
