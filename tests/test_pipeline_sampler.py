"""The clip-by-clip sampler on the tiny networks: the first denoising step is assembled exactly as the parity
fixtures define it (tests/fixtures/parity/README.md, "The step"), motion frames chain the clips, the last clip
is padded and trimmed, CFG can be switched off, and a seed reproduces the frames."""
from __future__ import annotations

import pytest
import torch

from emocast.models import TINY, build_net
from emocast.pipelines import conditioning
from emocast.pipelines.sampler import ClipSampler, SamplerSettings
from emocast.pipelines.scheduler import initial_noise, make_generator, make_scheduler
from emocast.preprocess.audio import audio_windows

SIZE = 64  # tiny kit: UNet sample_size 8 x VAE factor 8
LEVELS = (8, 4, 2, 1)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def models(tiny_models):
    from emocast.models.vae import load_vae

    torch.manual_seed(0)
    net = build_net(TINY).eval()
    vae = load_vae(tiny_models, "cpu", torch.float32)  # the kit's AutoencoderKL through the real loader
    return net, vae


@pytest.fixture(scope="module")
def inputs():
    g = torch.Generator().manual_seed(3)
    d = TINY.cross_attention_dim
    masks = {name: [torch.rand(s * s, generator=g) for s in LEVELS] for name in ("full", "face", "lip")}
    return dict(
        text_emb=torch.randn(1, 77, d, generator=g), uncond_text_emb=torch.randn(1, 77, d, generator=g),
        face_emb=torch.randn(1, 512, generator=g), face_region=(torch.rand(1, 3, SIZE, SIZE, generator=g) > 0.5).float(),
        full_masks=masks["full"], face_masks=masks["face"], lip_masks=masks["lip"],
        ref_pixels=torch.rand(1, 3, SIZE, SIZE, generator=g) * 2 - 1,
        features=torch.randn(12, TINY.audio_layers, TINY.audio_feature_dim, generator=g),
    )


class Recorder:
    """Wraps conditioning.prepare_clip / model_output / sampler.decode and keeps what they were given."""

    def __init__(self, monkeypatch, sampler):
        self.clips, self.steps, self.decoded = [], [], []
        orig_clip, orig_out, orig_decode = conditioning.prepare_clip, conditioning.model_output, sampler.decode

        def prepare_clip(net, video, **kw):
            out = orig_clip(net, video, **kw)
            self.clips.append(dict(kw, video=video, result=out))
            return out

        def model_output(net, video, clip, latents, t, audio_weights, **kw):
            self.steps.append(dict(video=video, clip=clip, latents=latents.clone(), t=int(t),
                                   audio_weights=audio_weights, **kw))
            return orig_out(net, video, clip, latents, t, audio_weights=audio_weights, **kw)

        def decode(latents):
            frames = orig_decode(latents)
            self.decoded.append(frames)
            return frames

        monkeypatch.setattr(conditioning, "prepare_clip", prepare_clip)
        monkeypatch.setattr(conditioning, "model_output", model_output)
        monkeypatch.setattr(sampler, "decode", decode)


def run(models, inputs, monkeypatch, num_frames, seed=5, **settings):
    net, vae = models
    sampler = ClipSampler(net, vae, SamplerSettings(**{"steps": 2, "clip_length": 4, **settings}))
    rec = Recorder(monkeypatch, sampler)
    with torch.inference_mode():
        video = sampler.prepare_video(**{k: inputs[k] for k in ("text_emb", "uncond_text_emb", "face_emb",
                                                               "face_region", "full_masks", "face_masks",
                                                               "lip_masks")})
        frames = list(sampler.frames(video, inputs["ref_pixels"], inputs["features"], num_frames,
                                     make_generator(seed), progress=False))
    return sampler, rec, frames


def test_first_step_is_the_parity_step(models, inputs, monkeypatch):
    """Every input of the first UNet call equals a manual assembly following the parity README, steps 1-7."""
    net, vae = models
    sampler, rec, _ = run(models, inputs, monkeypatch, num_frames=4, audio_weights=(0.7, 1.3, 1.6))
    step = rec.steps[0]
    video, clip = step["video"], step["clip"]
    timesteps = [s["t"] for s in rec.steps]
    with torch.inference_mode():
        # 1. cross-attention tokens: [uncond, cond], text first (77) then 4 face tokens; uncond = "" + imageproj(0)
        cond = torch.cat([inputs["text_emb"], net.imageproj(inputs["face_emb"])], 1)
        uncond = torch.cat([inputs["uncond_text_emb"], net.imageproj(torch.zeros(1, 512))], 1)
        torch.testing.assert_close(video.encoder_hidden_states, torch.cat([uncond, cond]), rtol=0, atol=0)
        # 2. audio tokens [zeros, audioproj(windows of frames 0..F-1 over the whole sequence)]
        windows = audio_windows(inputs["features"])[:4][None]
        tokens = net.audioproj(windows)
        torch.testing.assert_close(clip.audio_tokens, torch.cat([torch.zeros_like(tokens), tokens]), rtol=0, atol=0)
        # 3. FaceLocator feature [zeros, FL(face_region)] (one image, broadcast over frames)
        fl = net.face_locator(inputs["face_region"]).unsqueeze(2)
        torch.testing.assert_close(video.face_locator_feature, torch.cat([torch.zeros_like(fl), fl]), rtol=0, atol=0)
        # 4. masks: each level duplicated for CFG (the per-frame repeat happens inside the UNet)
        assert sorted(video.masks) == [0, 1, 2, 3]
        for level, side in enumerate(LEVELS):
            for i, name in enumerate(("full_masks", "face_masks", "lip_masks")):
                m = inputs[name][level].reshape(1, side * side)
                torch.testing.assert_close(video.masks[level][i], torch.cat([m, m]), rtol=0, atol=0)
        # 5. emotive-audio query: each row's text. The release queries with the conditional text in both rows; with
        # zero audio tokens the attention returns its bias whatever the query, so both give the same output
        torch.testing.assert_close(video.emo_text, torch.cat([inputs["uncond_text_emb"], inputs["text_emb"]]),
                                   rtol=0, atol=0)
        release_video = conditioning.VideoConditioning(**{**vars(video), "emo_text": inputs["text_emb"].expand(2, -1, -1)})
        outs = []
        for v in (video, release_video):  # without the step cache, so that emo_text is read at the step
            uncached = conditioning.prepare_clip(net, v, ref_latents=rec.clips[0]["ref_latents"],
                                                 audio_windows=rec.clips[0]["audio_windows"], cache=False)
            outs.append(conditioning.model_output(net, v, uncached, step["latents"], 999, (0.7, 1.3, 1.6)))
        assert torch.equal(*outs)
        # 6. reference pass on [ref, m1, m2] (clip 0: motion frames = copies of the reference), release pairing
        ref_lat = vae.encode(inputs["ref_pixels"]).latent_dist.mean * vae.config.scaling_factor
        call = rec.clips[0]
        torch.testing.assert_close(call["ref_latents"], ref_lat.expand(3, -1, -1, -1), rtol=0, atol=0)
        assert call["pairing"] == "release"
        expected = net.reference_features(ref_lat.expand(3, -1, -1, -1), torch.cat([uncond, cond]), pairing="release")
        for path, tokens in expected.reference.items():
            torch.testing.assert_close(clip.reference.reference[path], tokens, rtol=0, atol=0)
            torch.testing.assert_close(clip.reference.motion[path], expected.motion[path], rtol=0, atol=0)
        # 7. the uncond row does not attend to the reference; the noise is the seeded draw in the model dtype
        assert clip.reference_rows.tolist() == [False, True]
        noise = initial_noise(make_generator(5), (1, 4, 4, SIZE // 8, SIZE // 8), net.dtype, "cpu")
        torch.testing.assert_close(step["latents"], noise, rtol=0, atol=0)
        assert step["t"] == 999 and step["audio_weights"] == (0.7, 1.3, 1.6)
        sched = make_scheduler()
        sched.set_timesteps(2)
        assert timesteps == sched.timesteps.tolist() == [999, 499]


def test_no_cfg_builds_only_the_conditional_row(models, inputs, monkeypatch):
    _, rec, frames = run(models, inputs, monkeypatch, num_frames=3, cfg_scale=1.0)
    video, clip = rec.steps[0]["video"], rec.steps[0]["clip"]
    assert video.batch == 1 and clip.reference_rows is None  # the one row attends to the reference
    assert clip.audio_tokens.shape[0] == 1 and video.face_locator_feature.shape[0] == 1
    assert video.emo_text.shape[0] == 1 and rec.clips[0]["ref_latents"].shape[0] == 3
    assert len(frames) == 1 and frames[0].shape == (3, 3, SIZE, SIZE) and torch.isfinite(frames[0]).all()


def test_motion_frames_chain_clips_and_last_clip_is_trimmed(models, inputs, monkeypatch):
    net, vae = models
    sampler, rec, frames = run(models, inputs, monkeypatch, num_frames=10)  # clips of 4: 4 + 4 + 2 frames
    assert [f.shape[0] for f in frames] == [4, 4, 2] and len(rec.clips) == 3
    assert all(f.dtype == torch.float32 and 0 <= f.min() and f.max() <= 1 for f in frames)
    with torch.inference_mode():
        ref_lat = vae.encode(inputs["ref_pixels"]).latent_dist.mean * vae.config.scaling_factor
        for c in (1, 2):
            prev = rec.decoded[c - 1]  # the full decoded previous clip (float, before any trimming/uint8)
            motion = vae.encode(prev[-2:] * 2 - 1).latent_dist.mean * vae.config.scaling_factor
            torch.testing.assert_close(rec.clips[c]["ref_latents"], torch.cat([ref_lat, motion]))
            assert not torch.allclose(rec.clips[c]["ref_latents"][1:], ref_lat.expand(2, -1, -1, -1))
    # audio of clip c = windows of frames 4c..4c+3 over the whole (padded) sequence
    feats = inputs["features"]
    for c in range(3):
        torch.testing.assert_close(rec.clips[c]["audio_windows"][0], audio_windows(feats)[4 * c:4 * c + 4])
    # one generator seeded once per video, its stream continued: clip c starts from the (c+1)-th draw
    g = make_generator(5)
    for c in range(3):
        noise = initial_noise(g, (1, 4, 4, SIZE // 8, SIZE // 8), net.dtype, "cpu")
        torch.testing.assert_close(rec.steps[2 * c]["latents"], noise, rtol=0, atol=0)


def test_short_features_are_padded(models, inputs, monkeypatch):
    short = dict(inputs, features=inputs["features"][:6])  # 6 frames of features, 6 video frames, clips of 4
    _, rec, frames = run(models, short, monkeypatch, num_frames=6, steps=1)
    assert [f.shape[0] for f in frames] == [4, 2]
    last = rec.clips[1]["audio_windows"][0]
    # frame 6 sees frames 4..8 -> 4, 5 and the padding (copies of frame 5)
    torch.testing.assert_close(last[-2], short["features"][[4, 5, 5, 5, 5]])


def test_same_seed_same_frames(models, inputs, monkeypatch):
    _, _, a = run(models, inputs, monkeypatch, num_frames=5, steps=1, seed=11)
    _, _, b = run(models, inputs, monkeypatch, num_frames=5, steps=1, seed=11)
    _, _, c = run(models, inputs, monkeypatch, num_frames=5, steps=1, seed=12)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], c[0])


def test_clip_windows_match_whole_sequence_windows():
    feats = torch.arange(9.0)[:, None]
    torch.testing.assert_close(audio_windows(feats, 4, 8), audio_windows(feats)[4:8])
    assert audio_windows(feats, 0, 2)[0, :, 0].tolist() == [0, 0, 0, 1, 2]
    assert audio_windows(feats, 7, 9)[-1, :, 0].tolist() == [6, 7, 8, 8, 8]


def test_frames_are_streamed_clip_by_clip(models, inputs, monkeypatch):
    """Memory does not grow with the video: each clip is yielded before the next one is sampled."""
    net, vae = models
    sampler = ClipSampler(net, vae, SamplerSettings(steps=1, clip_length=4))
    rec = Recorder(monkeypatch, sampler)
    with torch.inference_mode():
        video = sampler.prepare_video(**{k: inputs[k] for k in ("text_emb", "uncond_text_emb", "face_emb",
                                                               "face_region", "full_masks", "face_masks",
                                                               "lip_masks")})
        gen = sampler.frames(video, inputs["ref_pixels"], inputs["features"], 12, make_generator(1), progress=False)
        assert next(gen).shape[0] == 4 and len(rec.clips) == 1 and len(rec.decoded) == 1
        assert next(gen).shape[0] == 4 and len(rec.clips) == 2
