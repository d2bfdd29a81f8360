#!/usr/bin/env bash
# Render talking-portrait videos.
#
#   bash inference.sh                      # the bundled examples (examples/manifest.csv) -> outputs/
#   bash inference.sh --source_image me.png --driving_audio hello.wav --prompt_emo "A person is talking with happy emotion."
#   bash inference.sh --manifest jobs.csv --outputs renders/
#
# Any arguments are passed to scripts/inference.py (see `python scripts/inference.py --help`). Models are
# checked first: when some are missing this prints what is missing with the command that fetches it
# (python scripts/download_models.py --group inference) and exits non-zero.
# PYTHON selects the interpreter (default: .venv/bin/python when present, else python3);
# EMOCAST_MODELS selects the models folder (default: pretrained_models).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
case "${1:-}" in -h|--help) sed -n 2,12p "$0"; exit 0;; esac
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
[ -d .venv/bin ] && export PATH="$PWD/.venv/bin:$PATH"  # ffmpeg fallback linked by scripts/install.sh
if [ $# -eq 0 ]; then
  # the bundled demo: check the models first (fast, before the heavy imports); with your own arguments
  # scripts/inference.py does the same check for what those arguments need (e.g. --no-separator, --models)
  if ! report="$("$PYTHON" scripts/download_models.py --check --group inference 2>&1)"; then
    echo "$report" >&2
    echo "inference.sh: pretrained models are missing; fetch them with: $PYTHON scripts/download_models.py --group inference" >&2
    exit 1
  fi
  set -- --manifest examples/manifest.csv --outputs outputs
fi
exec "$PYTHON" scripts/inference.py "$@"
