"""Package metadata. Install with `bash scripts/install.sh` (pins torch, handles the --no-deps packages)."""
from pathlib import Path

from setuptools import find_packages, setup


def _reqs(name):
    lines = Path(__file__).parent.joinpath("requirements", name).read_text().splitlines()
    return [l.split("#")[0].strip() for l in lines if l.split("#")[0].strip()]


setup(
    name="emocast",
    version="0.1.0",
    description="EmoCAST: emotional talking portraits from an image, speech and an emotive text prompt",
    long_description=Path(__file__).parent.joinpath("README.md").read_text(encoding="utf-8")
    if Path(__file__).parent.joinpath("README.md").exists()
    else "",
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["emocast", "emocast.*"]),
    include_package_data=True,
    package_data={"emocast": ["assets/*", "assets/**/*", "configs/**/*.yaml"]},
    install_requires=_reqs("core.txt"),
    extras_require={
        # the packages of requirements/nodeps-*.txt need `pip install --no-deps` (scripts/install.sh does it)
        "preprocess": _reqs("preprocess.txt"),
        "separator": _reqs("separator.txt"),
        "clip": _reqs("clip.txt"),
        "train": _reqs("train.txt"),
        "demo": _reqs("demo.txt"),
        "gpu": _reqs("gpu.txt"),
    },
)
