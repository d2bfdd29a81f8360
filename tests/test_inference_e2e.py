"""End to end on the CPU with the tiny model kit, through the real loaders and the CLI's main():
image file + WAV + prompt -> MP4 with H.264 at 25 fps, ceil(seconds * 25) frames, an AAC track as long as the
video; the same seed gives the same frames; three clips of 4 frames exercise motion-frame chaining; batch mode
renders a manifest with one model load."""
from __future__ import annotations

import math

import av
import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from helpers import load_script
from emocast.cli import run_main
from emocast.testing.synthetic import face_image, speech

SECONDS = 0.42  # ceil(0.42 * 25) = 11 frames = clips of 4 + 4 + 3
FAST = ["--steps", "2", "--no-separator", "--device", "cpu", "--no-progress", "data.n_sample_frames=4"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def cli():
    return load_script("inference")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    Image.fromarray(face_image("astronaut")[0]).save(d / "portrait.png")
    sf.write(d / "speech.wav", speech("Hello there.", SECONDS, sr=16000), 16000)
    sf.write(d / "speech44.wav", np.stack([speech("Good news!", 0.3, sr=44100)] * 2, 1), 44100)
    return d


def probe(path):
    with av.open(str(path)) as c:
        v, a = c.streams.video[0], c.streams.audio[0]
        out = dict(vcodec=v.codec_context.name, fps=v.average_rate, acodec=a.codec_context.name,
                   vdur=float(v.duration * v.time_base), adur=float(a.duration * a.time_base),
                   size=(v.codec_context.width, v.codec_context.height))
        out["frames"] = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
    return out


@pytest.fixture(scope="module")
def first_render(cli, inputs, tiny_models, tmp_path_factory):
    out = tmp_path_factory.mktemp("render") / "a.mp4"
    code = run_main(cli.main, ["--source_image", str(inputs / "portrait.png"), "--driving_audio",
                               str(inputs / "speech.wav"), "--prompt_emo", "A person is talking with happy emotion.",
                               "--models", str(tiny_models), "--seed", "7", "--output", str(out), *FAST])
    assert code == 0
    return out


def test_cli_renders_h264_aac_25fps_with_audio_length(first_render):
    info = probe(first_render)
    assert info["vcodec"] == "h264" and info["fps"] == 25 and info["acodec"] == "aac"
    n = math.ceil(SECONDS * 25)
    assert len(info["frames"]) == n == 11  # three clips of 4 frames, the last trimmed to 3
    assert info["size"] == (64, 64)
    assert abs(info["vdur"] - n / 25) < 1e-3 and abs(info["adur"] - info["vdur"]) < 1e-3
    assert info["frames"].std() > 1.0  # a real picture, not a constant


@pytest.fixture(scope="module")
def pipe(tiny_models):
    from emocast import config
    from emocast.pipelines.config import InferenceConfig
    from emocast.pipelines.inference import EmoCASTPipeline

    cfg = config.load(InferenceConfig, (), ["data.n_sample_frames=4", "preprocess.separate_vocals=false"])
    p = EmoCASTPipeline.from_pretrained(tiny_models, config=cfg, device="cpu", inference_steps=2, seed=7,
                                        progress=False)
    yield p
    p.close()


def test_same_seed_same_frames_through_the_api(pipe, first_render, inputs, tmp_path):
    again = pipe.render(inputs / "portrait.png", inputs / "speech.wav", "A person is talking with happy emotion.",
                        tmp_path / "b.mp4", progress=False)
    other = pipe.render(inputs / "portrait.png", inputs / "speech.wav", "A person is talking with happy emotion.",
                        tmp_path / "c.mp4", seed=8, progress=False)
    a, b, c = (probe(p)["frames"] for p in (first_render, again, other))
    assert np.array_equal(a, b)
    assert not np.array_equal(a[:4], c[:4])


def test_default_output_name_and_batch_manifest(cli, inputs, tiny_models, tmp_path):
    manifest = tmp_path / "jobs.csv"
    manifest.write_text(f"image,audio,prompt,output\n"
                        f"{inputs / 'portrait.png'},{inputs / 'speech44.wav'},\"angry, shouting\",\n"
                        f"{inputs / 'portrait.png'},{inputs / 'speech.wav'},calm,custom/x.mp4\n")
    # the default audio path: vocal separation (the kit's tiny Kim_Vocal_2 stand-in) before wav2vec2
    code = run_main(cli.main, ["--manifest", str(manifest), "--models", str(tiny_models), "--outputs",
                               str(tmp_path / "outs"), "--steps", "1", "--no-progress", "data.n_sample_frames=8"])
    assert code == 0
    first = probe(tmp_path / "outs" / "portrait_speech44.mp4")  # <image-stem>_<audio-stem>.mp4
    assert len(first["frames"]) == math.ceil(0.3 * 25) and abs(first["adur"] - first["vdur"]) < 1e-3
    assert len(probe(tmp_path / "custom" / "x.mp4")["frames"]) == 11  # relative to the manifest's folder


def test_no_cfg_render(pipe, inputs, tmp_path):
    from dataclasses import replace

    saved = pipe.sampler.settings
    pipe.sampler.settings = replace(saved, cfg_scale=1.0, steps=1)
    try:
        out = pipe.render(inputs / "portrait.png", inputs / "speech.wav", "neutral", tmp_path / "n.mp4",
                          progress=False)
    finally:
        pipe.sampler.settings = saved
    assert len(probe(out)["frames"]) == 11


def test_pipeline_feeds_the_preprocessed_inputs_to_the_step(pipe, inputs, monkeypatch):
    """The glue between preprocessing and the step: CLIP(prompt) / CLIP(""), the raw insightface embedding, the
    FaceLocator face region and the spec §7 soft masks per UNet level reach conditioning.prepare_video as such."""
    from emocast.pipelines import conditioning
    from emocast.preprocess.masks import level_masks

    seen = {}
    original = conditioning.prepare_video

    def spy(net, **kw):
        seen.update(kw)
        return original(net, **kw)

    monkeypatch.setattr(conditioning, "prepare_video", spy)
    ref = pipe.prepare_image(inputs / "portrait.png")
    with torch.inference_mode():
        pipe.conditioning(ref, "A person is talking with sad emotion.")
        torch.testing.assert_close(seen["text_emb"], pipe.text_encoder.encode(["A person is talking with sad emotion."]))
        torch.testing.assert_close(seen["uncond_text_emb"], pipe.text_encoder.encode([""]))
    assert seen["keep"].batch == 2 and seen["keep"].text.tolist() == [False, True]  # [uncond, cond] CFG rows
    assert np.array_equal(seen["face_emb"].numpy()[0], ref.face_emb) and np.abs(ref.face_emb).sum() > 0
    assert np.array_equal(seen["face_region"].numpy()[0], ref.face_region) and seen["face_region"].shape == (1, 3, 64, 64)
    for key, mask in (("full_masks", ref.masks.full), ("face_masks", ref.masks.face), ("lip_masks", ref.masks.lip)):
        expected = level_masks(mask, (8, 4, 2, 1))  # latent 8x8 for 64 px, halved per UNet level
        assert [m.shape[0] for m in seen[key]] == [64, 16, 4, 1]
        assert all(np.array_equal(a.numpy(), b) for a, b in zip(seen[key], expected))


def test_out_of_gpu_memory_is_one_message_and_no_file(pipe, inputs, tmp_path, monkeypatch):
    from emocast.errors import ConfigError

    def oom(*args, **kwargs):
        yield torch.zeros(1, 3, 64, 64)
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(pipe.sampler, "frames", oom)
    with pytest.raises(ConfigError, match=r"out of GPU memory while rendering .*o\.mp4.*vae_decode_batch=1"):
        pipe.render(inputs / "portrait.png", inputs / "speech.wav", "calm", tmp_path / "o.mp4", progress=False)
    assert list(tmp_path.iterdir()) == []
