"""Every bad input ends in one message naming the problem and the fix, and a non-zero exit (scripts/inference.py
main() through emocast.cli.run_main, in-process; one subprocess run of inference.sh)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from helpers import load_script
from emocast.cli import run_main
from emocast.testing.synthetic import face_image, speech

REPO = Path(__file__).resolve().parents[1]
FAST = ["--steps", "1", "--no-separator", "--device", "cpu", "--no-progress", "data.n_sample_frames=4"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def cli():
    return load_script("inference")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad_inputs")
    face = face_image("astronaut")[0]
    Image.fromarray(face).save(d / "portrait.png")
    (d / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 50)
    Image.fromarray(np.full((160, 160, 3), 20, np.uint8)).save(d / "dark.png")  # the tiny detector: no face
    Image.fromarray(np.asarray(Image.fromarray(face).resize((96, 84)))).save(d / "small.png")  # face ~29 px
    sf.write(d / "speech.wav", speech("Hello.", 0.2, sr=16000), 16000)
    (d / "corrupt.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + os.urandom(64))
    (d / "empty.wav").write_bytes(b"")
    sf.write(d / "nosamples.wav", np.zeros(0, np.float32), 16000)
    sf.write(d / "silent.wav", np.zeros(16000, np.float32), 16000)
    sf.write(d / "subframe.wav", speech("a", 0.02, sr=16000), 16000)  # 20 ms < one 40 ms frame
    return d


def call(cli, capsys, *args):
    code = run_main(cli.main, [str(a) for a in args])
    err = capsys.readouterr().err
    return code, err


def render_args(files, models, image="portrait.png", audio="speech.wav", *extra):
    return ["--source_image", files / image, "--driving_audio", files / audio, "--prompt_emo", "sad",
            "--models", models, "--output", files / "out" / f"{Path(image).stem}_{Path(audio).stem}.mp4", *FAST, *extra]


@pytest.mark.parametrize("image,message", [
    ("missing.png", "source image not found"),
    ("corrupt.png", "cannot read the source image"),
])
def test_bad_image_file(cli, capsys, files, tiny_models, image, message):
    code, err = call(cli, capsys, *render_args(files, tiny_models, image=image))
    assert code != 0 and message in err and image in err and "Fix" in err and "Traceback" not in err


@pytest.mark.parametrize("audio,message", [
    ("missing.wav", "driving audio not found"),
    ("corrupt.wav", "cannot decode the driving audio"),
    ("empty.wav", "empty file"),
    ("nosamples.wav", "contains no audio samples"),
    ("silent.wav", "is silent"),
    ("subframe.wav", "too short"),
])
def test_bad_audio_file(cli, capsys, files, tiny_models, audio, message):
    code, err = call(cli, capsys, *render_args(files, tiny_models, audio=audio))
    assert code != 0 and message in err and audio in err and "Fix" in err and "Traceback" not in err


def test_no_face(cli, capsys, files, tiny_models):
    code, err = call(cli, capsys, *render_args(files, tiny_models, image="dark.png"))
    assert code != 0 and "no face found" in err and "dark.png" in err and "--allow_no_face" in err


def test_no_face_switch_uses_the_whole_image(cli, capsys, files, tiny_models):
    code, err = call(cli, capsys, *render_args(files, tiny_models, "dark.png", "speech.wav", "--use_whole_image"))
    assert code == 0, err
    assert (files / "out" / "dark_speech.mp4").is_file()


def test_face_too_small(cli, capsys, files, tiny_models):
    code, err = call(cli, capsys, *render_args(files, tiny_models, image="small.png"))
    assert code != 0 and "too small" in err and "small.png" in err


def linked_kit(tiny_models, target, skip=()):
    """A copy of the tiny kit made of symlinks, without the components folders in ``skip``."""
    target.mkdir()
    for entry in Path(tiny_models).iterdir():
        if entry.name not in skip:
            (target / entry.name).symlink_to(entry)
    return target


def test_several_faces_uses_the_largest_with_a_warning(cli, capsys, files, tiny_models, tmp_path):
    from emocast.testing.tiny_face_models import write_tiny_face_models

    root = linked_kit(tiny_models, tmp_path / "models", skip=("face_analysis",))
    # two faces: a small one top-left and the usual one (larger)
    write_tiny_face_models(root / "face_analysis" / "models",
                           boxes=[(20.0, 20.0, 120.0, 130.0), (224.0, 96.0, 416.0, 320.0)])
    with pytest.warns(UserWarning, match="2 faces found"):
        code, err = call(cli, capsys, *render_args(files, root))
    assert code == 0, err


def test_missing_models_report_everything_before_loading(cli, capsys, files, tmp_path):
    empty = tmp_path / "models"
    empty.mkdir()
    code, err = call(cli, capsys, *render_args(files, empty)[:-len(FAST)], "--device", "cpu")
    assert code != 0 and "missing pretrained models" in err
    for name in ("emocast", "stable-diffusion-v1-5-config", "sd-vae-ft-mse", "clip-vit-large-patch14", "wav2vec",
                 "face_analysis", "audio_separator"):  # all of them in one report, separator included by default
        assert name in err
    assert "scripts/download_models.py" in err
    assert "diffusion_pytorch_model.safetensors" not in err.split("sd-vae-ft-mse")[0]  # no SD-1.5 weights at inference


def test_checkpoint_that_is_not_emocast(cli, capsys, files, tiny_models, tmp_path):
    torch.save({"model.weight": torch.zeros(3, 3)}, tmp_path / "other.pth")
    code, err = call(cli, capsys, *render_args(files, tiny_models), "--checkpoint", tmp_path / "other.pth")
    assert code != 0 and "other.pth" in err and "not an EmoCAST net.pth" in err
    (tmp_path / "junk.pth").write_bytes(b"<html>404</html>")
    code, err = call(cli, capsys, *render_args(files, tiny_models), "--checkpoint", tmp_path / "junk.pth")
    assert code != 0 and "junk.pth" in err and "re-download" in err and "Traceback" not in err
    code, err = call(cli, capsys, *render_args(files, tiny_models), "--checkpoint", tmp_path / "nope.pth")
    assert code != 0 and "checkpoint not found" in err


def test_bad_override_and_manifest(cli, capsys, files, tiny_models, tmp_path):
    code, err = call(cli, capsys, *render_args(files, tiny_models), "oops")
    assert code != 0 and "key=value" in err
    (tmp_path / "jobs.csv").write_text(f"{files / 'portrait.png'},{files / 'gone.wav'},happy\n")
    code, err = call(cli, capsys, "--manifest", tmp_path / "jobs.csv", "--models", tiny_models, *FAST)
    assert code != 0 and "line 1" in err and "gone.wav" in err


def test_help_lists_the_official_flags(cli, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--source_image", "--driving_audio", "--prompt_emo", "--outputs", "--pose_weight", "--face_weight",
                 "--lip_weight", "--face_expand_ratio", "--checkpoint", "--config", "--steps", "--cfg_scale",
                 "--seed", "--device", "--dtype", "--output", "--models", "--no-separator", "--manifest",
                 "--audio_ckpt_dir"):
        assert flag in out
    args = cli.build_parser().parse_args(["--audio_ckpt_dir", "ckpts/emocast"])  # the release's flag name
    assert args.checkpoint == "ckpts/emocast"


def test_manifest_with_single_video_flags_or_clashing_outputs(cli, capsys, files, tmp_path):
    """Flags that would be silently ignored, and two rows writing one file, fail before any model is loaded."""
    (tmp_path / "jobs.csv").write_text(f"{files / 'portrait.png'},{files / 'speech.wav'},happy,same.mp4\n"
                                       f"{files / 'portrait.png'},{files / 'speech.wav'},sad,same.mp4\n")
    code, err = call(cli, capsys, "--manifest", tmp_path / "jobs.csv", "--source_image", files / "portrait.png",
                     "--models", tmp_path / "none", *FAST)
    assert code != 0 and "--source_image" in err and "ignored with --manifest" in err
    code, err = call(cli, capsys, "--manifest", tmp_path / "jobs.csv", "--models", tmp_path / "none", *FAST)
    assert code != 0 and "lines 1, 2 all write" in err and "missing pretrained models" not in err


def test_inference_sh_with_models_missing(tmp_path):
    """`bash inference.sh` (the bundled demo and with arguments) prints the report and exits non-zero."""
    env = dict(os.environ, EMOCAST_MODELS=str(tmp_path / "none"), PYTHON=sys.executable)
    demo = subprocess.run(["bash", str(REPO / "inference.sh")], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert demo.returncode != 0 and "missing" in demo.stderr and "download_models.py" in demo.stderr
    args = subprocess.run(["bash", str(REPO / "inference.sh"), "--source_image", str(REPO / "examples" /
                           "reference_images" / "astronaut.png"), "--driving_audio",
                           str(REPO / "examples" / "driving_audios" / "happy_news.wav"), "--prompt_emo", "happy",
                           "--no-progress"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert args.returncode != 0 and "missing pretrained models" in args.stderr and "Traceback" not in args.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_requested_without_a_gpu(cli, capsys, files, tiny_models):
    code, err = call(cli, capsys, *render_args(files, tiny_models), "--device", "cuda")
    assert code != 0 and "no CUDA GPU" in err and "--device cpu" in err


def test_partial_or_release_style_config_keeps_the_defaults(cli, tmp_path):
    """A -c file only has to name what it changes; the released config's audio_ckpt_dir is the checkpoint."""
    (tmp_path / "mine.yaml").write_text("cfg_scale: 2.0\naudio_ckpt_dir: ./ckpts/emocast\ndata:\n  n_motion_frames: 2\n")
    cfg = cli.config_from_args(cli.build_parser().parse_args(["-c", str(tmp_path / "mine.yaml"), "--steps", "3"]))
    assert cfg.outputs == "outputs" and cfg.data.n_sample_frames == "auto" and cfg.seed == 42
    assert cfg.cfg_scale == 2.0 and cfg.inference_steps == 3 and cfg.checkpoint == "./ckpts/emocast"
    cfg = cli.config_from_args(cli.build_parser().parse_args(["-c", str(tmp_path / "mine.yaml"), "--checkpoint",
                                                              "x.pth"]))
    assert cfg.checkpoint == "x.pth"  # the flag wins


def test_a_released_inference_config_is_accepted_with_one_warning(cli, capsys, tmp_path):
    """The official configs/inference/default.yaml: its model paths are ignored (EmoCAST reads --models), with one
    warning that names them; the settings EmoCAST shares with it apply."""
    (tmp_path / "release.yaml").write_text(
        "source_image: examples/reference_images/1.jpg\nweight_dtype: fp16\ndata:\n  n_motion_frames: 2\n"
        "  n_sample_frames: 16\n  source_image:\n    width: 512\n    height: 512\n  driving_audio:\n"
        "    sample_rate: 16000\n  export_video:\n    fps: 25\ninference_steps: 40\ncfg_scale: 3.5\n"
        "audio_ckpt_dir: ./pretrained_models/emocast\nbase_model_path: ./pretrained_models/stable-diffusion-v1-5\n"
        "vae:\n  model_path: ./pretrained_models/sd-vae-ft-mse\nenable_zero_snr: true\n")
    cfg = cli.config_from_args(cli.build_parser().parse_args(["-c", str(tmp_path / "release.yaml")]))
    err = capsys.readouterr().err
    assert err.count("warning") == 1 and "base_model_path" in err and "data.source_image" in err
    assert cfg.data.n_sample_frames == 16 and cfg.checkpoint == "./pretrained_models/emocast"


@pytest.mark.parametrize("args, key", [
    (["lip_wieght=0.2"], "did you mean 'lip_weight'"),
    (["inference_steps=abc"], "inference_steps must be an integer"),
    (["--cfg_scale", "inf"], "cfg_scale must be a finite number"),
    (["--cfg_scale", "nan"], "cfg_scale must be a finite number"),
    (["--steps", "0"], "inference_steps must be at least 1"),
    (["data.size=100"], "data.size must be a multiple of 64"),
    (["vae_decode_batch=0"], "vae_decode_batch must be at least 1"),
])
def test_config_mistakes_exit_2_naming_the_key(cli, capsys, files, tmp_path, args, key):
    code, err = call(cli, capsys, *render_args(files, tmp_path / "no_models"), *args)
    assert code == 2 and key in err and "Traceback" not in err and err.count("\n") == 1
    assert "missing pretrained models" not in err  # found before any model is looked for


def test_bad_config_file(cli, capsys, files, tmp_path):
    (tmp_path / "broken.yaml").write_text("cfg_scale: [1,\n")
    code, err = call(cli, capsys, *render_args(files, tmp_path), "-c", tmp_path / "broken.yaml")
    assert code == 2 and "broken.yaml is not valid YAML at line" in err
    (tmp_path / "typo.yaml").write_text("preprocess:\n  separate_vocal: false\n")
    code, err = call(cli, capsys, *render_args(files, tmp_path), "-c", tmp_path / "typo.yaml")
    assert code == 2 and "did you mean 'preprocess.separate_vocals'" in err


def test_print_config_shows_the_effective_values(cli, capsys):
    code, _ = call(cli, capsys)  # nothing given: the missing-input message, not a crash
    assert code == 2
    assert run_main(cli.main, ["--steps", "7", "--print_config", "data.size=256"]) == 0
    out = capsys.readouterr().out
    import yaml

    printed = yaml.safe_load(out)
    assert printed["inference_steps"] == 7 and printed["data"]["size"] == 256 and printed["cfg_scale"] == 3.5
