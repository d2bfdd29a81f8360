#!/usr/bin/env python
"""EmoCAST web demo: upload a portrait and speech, type an emotive prompt, get the talking video.

Examples:
  python app.py                                   # http://127.0.0.1:7860, models from pretrained_models/
  python app.py --models /data/pretrained_models --checkpoint runs/phase3/final --port 8080
  python app.py --share                           # also a public gradio.live link (off by default)
  python app.py --device cpu data.n_sample_frames=8   # any inference config key=value (docs/config-reference.md)

Needs the demo extra: bash scripts/install.sh --extras "preprocess separator clip demo" (Gradio). The models are
loaded once before the page opens (missing ones are reported with the command that fetches them); jobs queue and
run one at a time. The page's defaults are the inference defaults (and the -c file / key=value given here).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from emocast.cli import add_config_arguments, config_from_args, run_main  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="app.py", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", metavar="DIR", help="pretrained_models folder (default: pretrained_models or "
                                                   "$EMOCAST_MODELS)")
    p.add_argument("--checkpoint", help="EmoCAST net.pth, or a folder holding it (default: <models>/emocast)")
    p.add_argument("--port", type=int, default=7860, help="port of the page (default: %(default)s)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: %(default)s, this machine only; 0.0.0.0: your network)")
    p.add_argument("--share", action="store_true", help="also open a public share link through Gradio (off by default)")
    p.add_argument("--device", help="cpu, cuda, cuda:N or auto (default: cuda when available)")
    p.add_argument("--dtype", help="fp16, bf16, fp32 or auto (default: fp16 on cuda, fp32 on cpu)")
    p.add_argument("--no-separator", dest="no_separator", action="store_true",
                   help="skip vocal separation (clean speech; no audio_separator model needed)")
    p.add_argument("--outputs", help="folder for the rendered videos (default: a temporary folder)")
    p.add_argument("--examples", default=str(REPO / "examples"),
                   help="folder with prompts.txt and manifest.csv shown as examples (default: %(default)s)")
    add_config_arguments(p, what="inference settings")
    return p


def main(argv=None) -> int:
    import logging

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from the page's server
    args = build_parser().parse_intermixed_args(argv)
    from emocast.pipelines.config import InferenceConfig

    values = {"models_root": args.models, "checkpoint": args.checkpoint, "device": args.device, "dtype": args.dtype}
    if args.no_separator:
        values["preprocess.separate_vocals"] = False
    cfg = config_from_args(InferenceConfig, args, values)
    if args.print_config:
        from emocast.cli import print_config

        return print_config(cfg)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not every request of the page's own health checks
    try:
        import gradio  # noqa: F401
    except ImportError:
        from emocast.errors import ConfigError

        raise ConfigError("the web demo needs Gradio: bash scripts/install.sh --extras \"preprocess separator clip "
                          "demo\" (or pip install -c requirements/constraints.txt -r requirements/demo.txt)") from None
    from emocast.demo import DemoRenderer, build_demo
    from emocast.pipelines.card import read_card
    from emocast.pipelines.inference import EmoCASTPipeline, resolve_checkpoint

    pipe = EmoCASTPipeline.from_config(cfg)  # once, before the page opens
    _, found = read_card(resolve_checkpoint(cfg.checkpoint, cfg.models_root))
    with tempfile.TemporaryDirectory(prefix="emocast-demo-") as tmp:
        out = Path(args.outputs) if args.outputs else Path(tmp)
        examples = Path(args.examples) if args.examples else None
        demo = build_demo(DemoRenderer(pipe, cfg, found, out), examples)
        print(f"EmoCAST demo on http://{args.host}:{args.port} (Ctrl+C stops it)", flush=True)
        try:
            demo.launch(server_name=args.host, server_port=args.port, share=args.share, ssr_mode=False,
                        allowed_paths=[str(p) for p in (examples, out) if p is not None], show_error=False,
                        quiet=True)
        finally:
            pipe.close()
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
