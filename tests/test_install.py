"""The installed environment: CPU torch stays pinned, no CUDA / torchvision wheels, the package is importable."""
from __future__ import annotations

import importlib.metadata as md
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_torch_is_the_pinned_cpu_build():
    import torch

    pin = re.search(r"^torch==(\S+)", (REPO / "requirements" / "constraints.txt").read_text(), re.M).group(1)
    assert torch.__version__.split("+")[0] == pin
    if torch.version.cuda is None:  # a CPU machine (CI): exactly the CPU build
        assert torch.__version__.endswith("+cpu") or "+" not in torch.__version__


def test_no_cuda_torchvision_or_triton_wheels():
    names = sorted({(d.metadata["Name"] or "").lower() for d in md.distributions()})
    bad = [n for n in names if n.startswith(("nvidia-", "triton", "torchvision", "torchaudio", "cuda-"))]
    import torch

    if torch.version.cuda is None:
        assert not bad, bad
    else:
        assert not [n for n in bad if n.startswith(("torchvision", "torchaudio"))], bad


def test_single_opencv_and_nodeps_packages_present():
    names = {(d.metadata["Name"] or "").lower() for d in md.distributions()}
    assert "opencv-python-headless" in names
    assert not names & {"opencv-python", "opencv-contrib-python", "onnx-weekly", "onnx2torch-py313"}


def test_package_installed_from_this_checkout():
    import emocast

    assert Path(emocast.__file__).resolve().parent == REPO / "emocast"
    assert md.version("emocast")


def test_requirements_txt_points_at_the_pinned_files():
    text = (REPO / "requirements.txt").read_text()
    assert "-c requirements/constraints.txt" in text and "-r requirements/core.txt" in text
