"""The installed environment: CPU torch stays pinned, no CUDA / torchvision wheels, the package is importable."""
from __future__ import annotations

import importlib.metadata as md
import importlib.util
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


# ---------------------------------------------------------------------------------------------- README commands
def _readme_commands() -> list[str]:
    """Shell commands of the README's ```bash blocks (continuation lines joined, comments stripped)."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    cmds = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        block = block.replace("\\\n", " ")
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if line and not line.startswith("#"):
                cmds.append(" ".join(line.split()))
    return cmds


def test_readme_quick_start_is_two_commands():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    quick = re.search(r"## Quick start.*?```bash\n(.*?)```", text, re.S).group(1)
    assert [l.split("#")[0].strip() for l in quick.strip().splitlines()] == ["make demo", "make test"]


def test_readme_commands_exist_with_their_flags():
    import subprocess
    import sys

    makefile = (REPO / "Makefile").read_text()
    helps: dict[str, str] = {}
    for cmd in _readme_commands():
        words = cmd.split()
        while "=" in words[0] and not words[0].startswith("-"):  # leading VAR=value assignments
            words = words[1:]
        if words[0] == "python" and words[1] == "-m":
            assert importlib.util.find_spec(words[2]) is not None, cmd
            continue
        if words[0] == "make":
            assert re.search(rf"^{re.escape(words[1])}:", makefile, re.M), cmd
            continue
        if words[0] == "bash":
            assert (REPO / words[1]).is_file(), cmd
            if words[1] != "inference.sh" or len(words) == 2:
                continue
            words = ["python", "scripts/inference.py", *words[2:]]  # inference.sh passes its arguments on
        script = next(w for w in words if w.endswith(".py") and (REPO / w).is_file())  # scripts/*.py, app.py
        if script not in helps:
            p = subprocess.run([sys.executable, str(REPO / script), "--help"], capture_output=True, text=True,
                               cwd=REPO, timeout=120)
            assert p.returncode == 0, (script, p.stderr[-500:])
            helps[script] = p.stdout
        after = words[words.index(script) + 1:]
        for w in after:
            if w.startswith("-") and w != "--help":
                assert w.split("=")[0] in helps[script], (cmd, w)
        for i, w in enumerate(after):
            if w in ("-c", "--config", "--config_file"):
                assert (REPO / after[i + 1]).is_file(), cmd
        if "--config_file" in words:
            assert (REPO / words[words.index("--config_file") + 1]).is_file(), cmd


def test_readme_local_links_exist():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
        if not target.startswith("http"):
            assert (REPO / target).exists(), target
