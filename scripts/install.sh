#!/usr/bin/env bash
# The single way to install EmoCAST (README, Makefile and .ci/run all call this).
#
#   bash scripts/install.sh [--venv DIR|--no-venv] [--extras "preprocess separator clip train eval demo gpu"] [--cpu-torch|--system-torch]
#
# * Creates a virtual environment (default: .venv in the repository root) unless --no-venv is given.
# * Pins torch through requirements/constraints.txt so a resolver never pulls a CUDA build on a CPU machine
#   (on a GPU machine, install the CUDA torch you want *first* and pass --system-torch; --cpu-torch takes the
#   pinned torch from the PyTorch CPU wheel index, for CPU machines whose pip has no local CPU wheel).
# * Installs the packages whose declared dependencies would pull torchvision / a second OpenCV with --no-deps.
# * Never installs torchvision or torchaudio; fails if a CUDA wheel slipped into a CPU-torch environment.
# * Links imageio-ffmpeg's bundled ffmpeg into the venv's bin/ when no ffmpeg is on PATH (audio-separator).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$here/.venv"
extras="preprocess separator clip train eval demo"
use_venv=1
keep_torch=0
cpu_torch=0
while [ $# -gt 0 ]; do
  case "$1" in
    --venv) venv="$2"; shift 2;;
    --no-venv) use_venv=0; shift;;
    --extras) extras="$2"; shift 2;;
    --system-torch) keep_torch=1; shift;;
    --cpu-torch) cpu_torch=1; shift;;
    -h|--help) sed -n 2,13p "$0"; exit 0;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2;;
  esac
done
cd "$here"
if [ "$use_venv" = 1 ]; then
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
  fi
  py="$venv/bin/python"
else
  py="$(command -v python3)"
fi
pip=("$py" -m pip install --disable-pip-version-check -q)
req=requirements
cons=("-c" "$req/constraints.txt")
if [ "$keep_torch" = 1 ]; then
  # keep whatever torch is installed (e.g. a CUDA build on a GPU machine)
  tv="$("$py" -c 'import torch;print(torch.__version__.split("+")[0])')"
  grep -v '^torch==' "$req/constraints.txt" > /tmp/emocast-constraints.txt; echo "torch==$tv" >> /tmp/emocast-constraints.txt
  cons=("-c" /tmp/emocast-constraints.txt)
fi
files=("-r" "$req/core.txt")
nodeps=()
for e in $extras; do
  case "$e" in
    preprocess) files+=("-r" "$req/preprocess.txt"); nodeps+=("-r" "$req/nodeps-preprocess.txt");;
    separator)  files+=("-r" "$req/separator.txt");  nodeps+=("-r" "$req/nodeps-separator.txt");;
    clip)       files+=("-r" "$req/clip.txt");       nodeps+=("-r" "$req/nodeps-clip.txt");;
    train)      files+=("-r" "$req/train.txt");;   # + requirements/deepspeed.txt (below)
    eval)       files+=("-r" "$req/eval.txt");       nodeps+=("-r" "$req/nodeps-eval.txt");;
    demo)       files+=("-r" "$req/demo.txt");;   # web demo (Gradio) + its browser test (Playwright)
    gpu)        files+=("-r" "$req/gpu.txt");;
    *) echo "install.sh: unknown extra '$e'" >&2; exit 2;;
  esac
done
if [ "$keep_torch" = 1 ]; then
  # drop the torch pin from core.txt so the installed build stays
  grep -v '^torch==' "$req/core.txt" > /tmp/emocast-core.txt
  files=("${files[@]/$req\/core.txt//tmp/emocast-core.txt}")
fi
echo "[install] python: $py"
"${pip[@]}" --upgrade pip setuptools wheel
if [ "$cpu_torch" = 1 ] && [ "$keep_torch" = 0 ]; then
  "${pip[@]}" --index-url https://download.pytorch.org/whl/cpu "$(grep '^torch==' "$req/constraints.txt")"
fi
"${pip[@]}" "${cons[@]}" "${files[@]}"
if [ ${#nodeps[@]} -gt 0 ]; then
  "${pip[@]}" --no-deps "${nodeps[@]}"
fi
case " $extras " in  # DeepSpeed (sharded training) builds against the installed torch
  *" train "*) "${pip[@]}" "${cons[@]}" --no-build-isolation -r "$req/deepspeed.txt";;
esac
"${pip[@]}" --no-deps --no-build-isolation -e .
"$py" - <<'PY'
import importlib.metadata as md, sys, torch
names = sorted({(d.metadata["Name"] or "").lower() for d in md.distributions()})
never = [n for n in names if n.startswith(("torchvision", "torchaudio"))]
cuda = [n for n in names if n.startswith(("nvidia-", "triton", "cuda-"))] if torch.version.cuda is None else []
print(f"[install] torch {torch.__version__}; cuda available: {torch.cuda.is_available()}")
if never or cuda:
    sys.exit("[install] ERROR: unexpected packages installed: " + ", ".join(never + cuda)
             + ". Remove them with `pip uninstall -y <names>`; they must not be pulled by any requirement.")
PY
if [ "$use_venv" = 1 ] && ! command -v ffmpeg >/dev/null 2>&1 && [ ! -e "$venv/bin/ffmpeg" ]; then
  ln -s "$("$py" -c 'import imageio_ffmpeg; print(imageio_ffmpeg.get_ffmpeg_exe())')" "$venv/bin/ffmpeg"
  echo "[install] no ffmpeg on PATH: linked imageio-ffmpeg's binary as $venv/bin/ffmpeg (or: apt-get install ffmpeg)"
fi
echo "[install] done"
