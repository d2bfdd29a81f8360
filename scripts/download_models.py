#!/usr/bin/env python
"""Fetch the pretrained models EmoCAST needs into pretrained_models/ (only what is missing), or check them.

Examples:
  python scripts/download_models.py                        # the official layout (inference + training init)
  python scripts/download_models.py --group inference      # only what rendering a video needs
  python scripts/download_models.py --only wav2vec --only sd-vae-ft-mse
  python scripts/download_models.py --check                # one line per component; exit 1 if any is missing
  python scripts/download_models.py --list                 # the components, their sources and sizes

Hub downloads resume where they stopped; HF_ENDPOINT selects a mirror, HF_TOKEN / `huggingface-cli login` gives
access to gated repositories, HF_HUB_OFFLINE=1 (or no network) only prints the report and exits non-zero.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from emocast import download, registry  # noqa: E402
from emocast.cli import run_main  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default=None,
                   help=f"models root (default: ${registry.ENV_ROOT} or ./{registry.DEFAULT_ROOT})")
    p.add_argument("--group", choices=download.GROUPS, default=download.DEFAULT_GROUP,
                   help="inference: what rendering needs; train (default): the official layout = inference + "
                        "training initialisation (AnimateDiff motion module); eval: metric models; all: everything")
    p.add_argument("--only", action="append", default=[], metavar="NAME",
                   help=f"only this component (repeatable); one of: {', '.join(registry.COMPONENTS)}")
    p.add_argument("--check", action="store_true",
                   help="do not download: print present / missing / incomplete per component with the fix; "
                        "exit 1 if a required one is not present")
    p.add_argument("--list", action="store_true", help="list the components (folder, size, source) and exit")
    p.add_argument("--token", default=None, help="Hugging Face token (default: HF_TOKEN or the saved login)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    names = download.select(args.group, args.only)
    if args.list:
        for n in names:
            c = registry.COMPONENTS[n]
            opt = " (optional)" if c.optional else ""
            print(f"{n:<24} {c.group:<9} {c.size:>8}  {c.folder}/{{{', '.join(c.files)}}}{opt}\n"
                  f"{'':<24} from {c.source}")
        return 0
    if args.check:
        lines, bad = download.check(names, args.root)
        print("\n".join(lines))
        if bad:
            print(f"{len(bad)} required component(s) not present: {', '.join(bad)}", file=sys.stderr)
            return 1
        return 0
    download.download(names, args.root, token=args.token, progress=not args.no_progress)
    lines, _ = download.check(names, args.root)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
