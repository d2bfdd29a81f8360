#!/usr/bin/env bash
# Render talking-portrait videos.
#
#   bash inference.sh                      # the bundled examples (examples/manifest.csv) -> outputs/ of the repository
#   bash inference.sh --source_image me.png --driving_audio hello.wav --prompt_emo "A person is talking with happy emotion."
#   bash inference.sh --manifest jobs.csv --outputs renders/
#
# Any arguments are passed to scripts/inference.py (see `python scripts/inference.py --help`); paths in them are
# read from the folder you run this from (the script can be called from anywhere). Models are checked first: when
# some are missing this prints what is missing with the command that fetches it
# (python scripts/download_models.py --group inference) and exits non-zero.
# PYTHON selects the interpreter (default: the repository's .venv/bin/python when present, else python3);
# EMOCAST_MODELS selects the models folder (default: the repository's pretrained_models).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
case "${1:-}" in -h|--help) sed -n 2,14p "$HERE/inference.sh"; exit 0;; esac
if [ -z "${PYTHON:-}" ]; then
  if [ -x "$HERE/.venv/bin/python" ]; then PYTHON="$HERE/.venv/bin/python"; else PYTHON=python3; fi
fi
[ -d "$HERE/.venv/bin" ] && export PATH="$HERE/.venv/bin:$PATH"  # ffmpeg fallback linked by scripts/install.sh
export EMOCAST_MODELS="${EMOCAST_MODELS:-$HERE/pretrained_models}"
if [ $# -eq 0 ]; then
  # the bundled demo: check the models first (fast, before the heavy imports); with your own arguments
  # scripts/inference.py does the same check for what those arguments need (e.g. --no-separator, --models)
  if ! report="$("$PYTHON" "$HERE/scripts/download_models.py" --check --group inference 2>&1)"; then
    echo "$report" >&2
    echo "inference.sh: pretrained models are missing; fetch them with: $PYTHON $HERE/scripts/download_models.py --group inference" >&2
    exit 1
  fi
  set -- --manifest "$HERE/examples/manifest.csv" --outputs "$HERE/outputs"
fi
exec "$PYTHON" "$HERE/scripts/inference.py" "$@"
