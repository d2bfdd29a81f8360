#!/usr/bin/env python
"""Export the networks of a training checkpoint as net.pth (the layout scripts/inference.py loads) + safetensors,
with the checkpoint card (net.json: how to sample the weights) the checkpoint carries.

Examples:
  python scripts/export_checkpoint.py exp_output/stage2_phase3/checkpoints/checkpoint-0005000 -o exports/phase3
  python scripts/export_checkpoint.py exp_output/stage2_phase1 --dtype fp16      # the newest checkpoint of a run

Training already exports <output_dir>/final/ at its end; use this for intermediate checkpoints.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from emocast.cli import run_main  # noqa: E402


def build_parser():
    p = argparse.ArgumentParser(prog="scripts/export_checkpoint.py", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="a checkpoint-<step> folder, or a training output_dir (its newest checkpoint)")
    p.add_argument("-o", "--output", help="output folder (default: <output_dir>/exports/<checkpoint name>, outside "
                                          "checkpoints/, whose old entries training prunes)")
    p.add_argument("--dtype", default="fp32", choices=("fp32", "fp16", "bf16"), help="tensor dtype (default fp32)")
    p.add_argument("--no-safetensors", dest="safetensors", action="store_false", help="write net.pth only")
    return p


def default_output(checkpoint: Path) -> Path:
    """``<output_dir>/exports/checkpoint-<step>`` for a checkpoint of a training run: not inside the checkpoint
    folder, which keep-last-N pruning deletes while the run goes on (``<checkpoint>/export`` otherwise)."""
    if checkpoint.parent.name == "checkpoints":
        return checkpoint.parent.parent / "exports" / checkpoint.name
    return checkpoint / "export"


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    from emocast.errors import CheckpointError
    from emocast.pipelines.card import read_card
    from emocast.training.checkpointing import export_state_dict, latest_checkpoint, network_state_from_checkpoint

    path = Path(args.checkpoint)
    if not (path / "trainer_state.json").is_file():
        found = latest_checkpoint(path / "checkpoints") if (path / "checkpoints").is_dir() else None
        if found is None:
            raise CheckpointError(f"{path} is neither a training checkpoint folder (checkpoint-<step> with "
                                  "trainer_state.json) nor a training output_dir with checkpoints/")
        path = found
    state = network_state_from_checkpoint(path)
    dtype = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
    out = Path(args.output) if args.output else default_output(path)
    card, found = read_card(path)  # every checkpoint of our trainer carries its card
    if not found:
        raise CheckpointError(f"{path} has no checkpoint card (net.json): it was written by an older EmoCAST. Fix: "
                              "resume the run for one step with this version (its next checkpoint has the card), "
                              "or use the run's final/ export")
    card.provenance = {**card.provenance, "source": str(path), "exported_by": "scripts/export_checkpoint.py"}
    paths = export_state_dict(state, out, card, dtype=dtype, safetensors=args.safetensors)
    print(f"exported {len(state)} tensors from {path} to {paths['pth']}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
