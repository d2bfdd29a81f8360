#!/usr/bin/env python
"""Build a test-set manifest for batch rendering plus the emotion labels for scripts/evaluate.py.

Examples:
  # the paper's in-the-wild setup: every image x every audio (7 x 40 = 280 videos), emotions from a CSV
  python scripts/make_testset_manifest.py --images wild/images --audios wild/audios \
      --emotions wild/audio_emotions.csv --out testsets/wild.csv --outputs-dir outputs/wild
  # the paper's MEAD test set (4 test subjects x 8 emotions x 8 clips = 256 videos) from a MEAD tree
  python scripts/make_testset_manifest.py --mead-eat data/MEAD --out testsets/mead.csv --outputs-dir outputs/mead
  # EAT's own MEAD tests: all 985 clips, or its 100-clip sample (the list file from github.com/yuangan/EAT_code)
  python scripts/make_testset_manifest.py --mead-eat data/MEAD --mead-clips all --out testsets/mead_eat985.csv
  python scripts/make_testset_manifest.py --mead-eat data/MEAD --mead-names rand_sample_ours_mead100.npy \
      --out testsets/mead_eat100.csv
  # explicit rows (columns image,audio and emotion and/or prompt; optional intensity, output)
  python scripts/make_testset_manifest.py --rows my_rows.csv --out testsets/mine.jsonl

Then render and evaluate:
  python scripts/inference.py --manifest testsets/wild.csv
  python scripts/evaluate.py --videos outputs/wild --labels testsets/wild_labels.csv --metrics acc_emo,lse

Writes the manifest (.csv or .jsonl: image,audio,prompt,output) and <manifest stem>_labels.csv
(video,emotion,intensity,image,audio,prompt). Rows with an emotion but no prompt get a description from the prompt
bank (emocast.labels.prompts), seeded per row (--seed). --mead-eat also writes the subjects' reference images
(references/<id>.png, unless --mead-references) and links the ground-truth videos under their output names into <manifest stem>_gt/ (for
scripts/evaluate.py --gt); see docs/evaluation.md for how clips, references and audio are chosen.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from emocast.cli import run_main  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", help="folder of reference images (cross product with --audios)")
    src.add_argument("--rows", help="CSV of explicit rows: image,audio,emotion|prompt[,intensity,output]")
    src.add_argument("--mead-eat", metavar="MEAD_ROOT", help="the paper's MEAD test set from a MEAD tree "
                                                             "(<id>/video/front/<emotion>/level_<n>/<clip>.mp4)")
    p.add_argument("--mead-clips", choices=("paper", "all"), default="paper",
                   help="with --mead-eat: 'paper' = 8 clips per subject and emotion (256 videos), 'all' = every "
                        "level-3 clip and level-1 neutral clip (EAT's full MEAD test, 985 videos in EAT's data)")
    p.add_argument("--mead-names", metavar="FILE",
                   help="with --mead-eat: only the clips of an EAT test list (e.g. rand_sample_ours_mead100.npy from "
                        "github.com/yuangan/EAT_code, or a text file of names like M003_ang_3_026)")
    p.add_argument("--mead-references", metavar="DIR",
                   help="with --mead-eat: reference images <id>.png|.jpg (EAT's: mead_data/images_evp_25/"
                        "new_neutral_2/<id>/<id>.png); default: the first frame of each subject's first neutral clip")
    p.add_argument("--audios", help="folder of driving audios (with --images)")
    p.add_argument("--emotions", help="CSV audio,emotion[,intensity] (else parsed from the audio file names)")
    p.add_argument("--emotion", help="one emotion for every audio (overrides file names)")
    p.add_argument("--intensity", type=int, choices=(1, 2, 3), help="intensity for the prompt bank (default: any)")
    p.add_argument("--out", required=True, help="manifest to write (.csv or .jsonl)")
    p.add_argument("--outputs-dir", help="folder for the rendered videos (output column); default: the inference "
                                         "script's output folder")
    p.add_argument("--seed", type=int, default=0, help="prompt sampling seed (default 0)")
    p.add_argument("--template-prompts", action="store_true",
                   help="use the plain template instead of the prompt bank")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from emocast.errors import InputError
    from emocast.evaluation import testset

    if args.images:
        if not args.audios:
            raise InputError("--images needs --audios (the cross product of the two folders is rendered)")
        rows = testset.cross_product(args.images, args.audios, args.emotions, args.emotion, args.intensity,
                                     args.seed, use_bank=not args.template_prompts)
    elif args.mead_eat:
        names = testset.read_eat_names(args.mead_names) if args.mead_names else None
        rows, gts = testset.mead_eat_rows(args.mead_eat, Path(args.out).parent, args.seed,
                                          use_bank=not args.template_prompts, clips=args.mead_clips, names=names,
                                          references=args.mead_references)
        gt_dir = testset.link_ground_truth(gts, Path(args.out).with_name(Path(args.out).stem + "_gt"))
        print(f"ground truth: {gt_dir} ({len(gts)} videos, named like the outputs)")
    else:
        rows = testset.from_rows_csv(args.rows, args.seed, use_bank=not args.template_prompts)
    manifest, labels = testset.write_manifest(rows, args.out, args.outputs_dir)
    emotions = sorted({r.emotion for r in rows if r.emotion})
    print(f"wrote {manifest} ({len(rows)} rows, {len(emotions)} emotion(s): {', '.join(emotions)}) and {labels}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
