"""Training and inference agree: stage-1 training on one prepared video (scripts/train_stage1.py) makes the
inference pipeline (``EmoCASTPipeline.render``, the code path of scripts/inference.py) render that video's
frames more closely than the untrained checkpoint does, from the same reference frame, audio, prompt and seed.

The trained render must also come close to the best the VAE allows (its own round trip of the frames).
Anything that makes inference see the network differently from training breaks that: latents scaled by
another factor than the VAE config's, reference features paired or conditioned differently, another text or
face-region convention, a checkpoint exported or loaded wrong. The kit's VAE makes this measurable: its
latents are signal and decoding inverts encoding up to the 8x8 averaging (emocast.testing.tiny_kit.write_vae).

Rendering settings: no classifier-free guidance (``cfg_scale=1``: the unconditional branch learns little in
50 steps and guidance would amplify its error), 5 DDIM steps, one clip of 8 frames at 64 px.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from test_train_data import REPO, make_prepared_dataset, run_train_script, tiny_overrides

from emocast.data import layout

FRAMES = 8  # rendered and compared
STEPS = 50  # stage-1 training steps (batch 2, lr 2e-3)
VIDEO = "astro_neutral"

pytestmark = pytest.mark.usefixtures("one_thread")

def _render(tiny_models, checkpoint, reference, audio, prompt, out) -> np.ndarray:
    import av

    from emocast.pipelines.inference import EmoCASTPipeline

    pipe = EmoCASTPipeline.from_pretrained(
        tiny_models, checkpoint=checkpoint, device="cpu", progress=False, seed=7, inference_steps=5, cfg_scale=1.0,
        # resolution and pairing from the card; the kit's face detector finds a ~20 px face in a 64 px frame
        **{"data.n_sample_frames": FRAMES, "preprocess.separate_vocals": False, "preprocess.min_face_size": 8})
    try:
        pipe.render(reference, audio, prompt, out, progress=False)
    finally:
        pipe.close()
    with av.open(str(out)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def test_stage1_training_brings_inference_renders_closer_to_its_video(tiny_models, tmp_path):
    import soundfile as sf
    from omegaconf import OmegaConf
    from PIL import Image

    from emocast.training.common import build_training_net

    meta = make_prepared_dataset(tmp_path / "data", identities={"astro": "astronaut"}, emotions=("neutral",))
    folder = layout.sample_dir(tmp_path / "data", VIDEO)
    video = layout.read_frames(folder)[:FRAMES]  # (FRAMES, 64, 64, 3): the training frames
    Image.fromarray(video[0]).save(tmp_path / "reference.png")  # a frame of the video, already at its crop
    wave, sr = sf.read(str(folder / layout.AUDIO), dtype="float32")
    sf.write(tmp_path / "speech.wav", wave[: int(sr * FRAMES / 25)], sr)  # FRAMES frames at 25 fps
    prompt = layout.read_info(folder).prompts[0]

    out = tmp_path / "stage1"
    assert run_train_script(1, [
        "--config", str(REPO / "configs" / "train" / "stage1.yaml"), "--output_dir", str(out), "--models",
        str(tiny_models), "--max_steps", str(STEPS), *tiny_overrides(meta, 1), "data.size=64", "data.batch_size=2",
        "optimizer.lr=2e-3", "models.init_checkpoint=null"]) == 0
    cfg = OmegaConf.load(out / "config.yaml")
    torch.manual_seed(int(cfg.seed))  # the untrained net is the run's starting point, as the trainer seeds it
    untrained = tmp_path / "untrained"
    untrained.mkdir()
    torch.save(build_training_net(cfg.models).state_dict(), untrained / "net.pth")
    shutil.copy(out / "final" / "net.json", untrained / "net.json")  # same reference pairing for both
    assert json.loads((untrained / "net.json").read_text())["reference_pairing"] == "matched"

    errors = {}
    for name, checkpoint in (("untrained", untrained), ("trained", out / "final")):
        frames = _render(tiny_models, checkpoint, tmp_path / "reference.png", tmp_path / "speech.wav", prompt,
                         tmp_path / f"{name}.mp4")
        assert frames.shape == video.shape, (name, frames.shape)
        errors[name] = float(((frames / 255.0 - video / 255.0) ** 2).mean())
    # the best any net can do through the kit's VAE: its round trip of the same frames
    from diffusers import AutoencoderKL

    from emocast import registry

    vae = AutoencoderKL.from_pretrained(registry.component_dir("sd-vae-ft-mse", tiny_models))
    pixels = torch.from_numpy(video).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        round_trip = (vae.decode(vae.encode(pixels).latent_dist.mean).sample / 2 + 0.5).clamp(0, 1)
    errors["vae"] = float(((round_trip - (pixels / 2 + 0.5)) ** 2).mean())
    # measured: untrained 0.113, trained 0.045 (x0.40), VAE round trip 0.025 (trained = 1.8x it); with latents
    # scaled by a hard-coded 0.18215 at inference (the bug this test was written against): trained 6.2x the round trip
    assert errors["trained"] <= 0.7 * errors["untrained"], errors  # training moved the render towards the video
    assert errors["trained"] <= 3.5 * errors["vae"], errors  # ... nearly as far as the VAE allows
