#!/usr/bin/env bash
# Gradescope runs this once, as root, while it builds the autograder image (an Ubuntu image); the
# Dockerfile beside the bundle runs it too. It installs the pinned packages of requirements.txt into
# $AUTOGRADER_ROOT/venv and readies the reference values from the bundled data and weights, so that
# nothing is downloaded when a submission is graded.
#
#   bash setup.sh             install (root; apt-get for Python >= 3.11 and bubblewrap when missing)
#   bash setup.sh --dry-run   install nothing: say what would be done, let pip resolve
#                             requirements.txt against $AUTOGRADER_PYTHON, check the bundle
set -euo pipefail
SOURCE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="${AUTOGRADER_ROOT:-/autograder}"
VENV="$ROOT/venv"
DRY_RUN=0
case "${1:-}" in
  --dry-run) DRY_RUN=1 ;;
  "") ;;
  *) echo "usage: bash setup.sh [--dry-run]" >&2; exit 2 ;;
esac

find_python() {  # the first Python >= 3.11 (the harness uses tomllib)
  local candidate
  for candidate in "${AUTOGRADER_PYTHON:-}" python3.13 python3.12 python3.11 python3; do
    if [ -n "$candidate" ] && command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      command -v "$candidate"
      return 0
    fi
  done
  return 1
}

echo "== system packages"
packages=()
command -v bwrap >/dev/null 2>&1 || packages+=(bubblewrap)     # the sandbox (optional: grading degrades without it)
command -v setpriv >/dev/null 2>&1 || packages+=(util-linux)   # the sandbox's private uid
PYTHON="$(find_python || true)"
[ -n "$PYTHON" ] || packages+=(python3.11 python3.11-venv)
if [ ${#packages[@]} -gt 0 ]; then
  if [ "$DRY_RUN" = 1 ]; then
    echo "would apt-get install: ${packages[*]}"
  else
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" \
      || echo "warning: could not install ${packages[*]}; grading reports which defences were missing"
  fi
fi
if [ -z "$PYTHON" ]; then
  PYTHON="$(find_python || true)"
  if [ -z "$PYTHON" ]; then
    [ "$DRY_RUN" = 1 ] || { echo "setup.sh: no Python >= 3.11 could be installed" >&2; exit 1; }
    PYTHON=python3.11
  fi
fi

echo "== Python packages (requirements.txt: the harness's exact pins)"
if [ "$DRY_RUN" = 1 ]; then
  echo "would create $VENV with $PYTHON and pip install -r requirements.txt into it"
  "$PYTHON" -m pip install --dry-run --disable-pip-version-check -r "$SOURCE/requirements.txt"
else
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install --no-cache-dir --disable-pip-version-check -r "$SOURCE/requirements.txt"
fi

echo "== bundle: weights, data, hidden inputs and reference values"
if [ "$DRY_RUN" = 1 ]; then
  (cd "$SOURCE" && PYTHONDONTWRITEBYTECODE=1 "$PYTHON" -m autograder.lms prepare --check)
else
  (cd "$SOURCE" && "$VENV/bin/python" -m autograder.lms prepare)
fi
