"""Audio decoding and bad inputs, 16 kHz conversion, frame counts/padding, wav2vec2 features (chunked), windows,
and vocal separation through audio-separator's real loader with the tiny MDX model."""
import math
import warnings

import numpy as np
import pytest
import soundfile as sf
import torch

from emocast import registry
from emocast.cli import run_main
from emocast.errors import InputError
from emocast.preprocess.audio import (SAMPLE_RATE, Wav2VecFeatures, audio_windows, load_audio, load_speech,
                                      num_frames, pad_to_clip)


def _tone(seconds, rate=22050, channels=2, amp=0.3):
    t = np.arange(int(round(seconds * rate))) / rate
    x = amp * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    return np.stack([x * (1 - 0.2 * c) for c in range(channels)]).astype(np.float32)


def _encode_aac(path, wave, rate):
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=rate, layout="stereo")
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(wave, np.float32), format="fltp", layout="stereo")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


@pytest.fixture(scope="module")
def w2v_root(tmp_path_factory):
    from emocast.testing.tiny_kit import write_wav2vec

    root = tmp_path_factory.mktemp("models")
    write_wav2vec(registry.COMPONENTS["wav2vec"].path(root))
    return root


@pytest.fixture(scope="module")
def w2v(w2v_root):
    return Wav2VecFeatures(w2v_root, device="cpu")


# ------------------------------------------------------------------------------------------------ decoding
def test_load_wav_pcm16_stereo(tmp_path):
    wave = _tone(1.0, 44100)
    sf.write(tmp_path / "a.wav", wave.T, 44100, subtype="PCM_16")
    out, rate = load_audio(tmp_path / "a.wav")
    assert rate == 44100 and out.shape == (2, 44100) and out.dtype == np.float32
    np.testing.assert_allclose(out, wave, atol=1e-4)


def test_load_compressed_any_rate_to_16k_mono(tmp_path):
    wave = _tone(1.5, 48000)
    _encode_aac(tmp_path / "a.m4a", wave, 48000)
    out, rate = load_audio(tmp_path / "a.m4a")
    assert rate == 48000 and out.shape[0] == 2 and abs(out.shape[1] - 72000) < 2048  # codec priming/padding
    speech, frames = load_speech(tmp_path / "a.m4a")
    assert speech.ndim == 1 and abs(len(speech) - 24000) < 700
    assert frames == math.ceil(len(speech) / SAMPLE_RATE * 25)


@pytest.mark.parametrize("case,match", [
    ("missing", "driving audio not found"),
    ("empty_file", "empty file"),
    ("corrupt", "cannot decode"),
    ("no_samples", "no audio samples"),
    ("silent", "is silent"),
    ("near_silent", "is silent"),
    ("sub_frame", "too short"),
])
def test_bad_audio_raises_input_error(tmp_path, case, match):
    p = tmp_path / "speech.wav"
    if case == "empty_file":
        p.write_bytes(b"")
    elif case == "corrupt":
        sf.write(p, _tone(1.0).T, 22050)
        p.write_bytes(b"RIFF" + b"\x00garbage" * 50)
    elif case == "no_samples":
        sf.write(p, np.zeros((0, 1), np.float32), 16000)
    elif case == "silent":
        sf.write(p, np.zeros((16000, 2), np.float32), 16000, subtype="PCM_16")
    elif case == "near_silent":
        sf.write(p, np.full((16000, 1), 2e-5, np.float32), 16000, subtype="FLOAT")
    elif case == "sub_frame":
        sf.write(p, _tone(0.03, 16000, 1).T, 16000)  # 30 ms < one 40 ms frame
    with pytest.raises(InputError, match=match) as err:
        load_audio(p)
    assert str(p) in str(err.value) and ("Fix:" in str(err.value) or case == "sub_frame")


def test_bad_audio_through_run_main(tmp_path, capsys):
    code = run_main(lambda argv: load_audio(tmp_path / "none.wav"))
    captured = capsys.readouterr().err
    assert code != 0 and "driving audio not found" in captured and "Traceback" not in captured


# ------------------------------------------------------------------------------------------------ frames
def test_num_frames_and_clip_padding():
    assert num_frames(16000) == 25 and num_frames(16001) == 26 and num_frames(640) == 1 and num_frames(1) == 1
    x = np.ones(25 * 640, np.float32)
    padded, n = pad_to_clip(x, 25, 16)
    assert n == 32 and len(padded) == 32 * 640 and padded[25 * 640:].sum() == 0
    same, n2 = pad_to_clip(x[:16 * 640], 16, 16)
    assert n2 == 16 and len(same) == 16 * 640


def test_windows_clamp_at_the_ends():
    feats = torch.arange(6, dtype=torch.float32)[:, None, None].expand(6, 3, 4).clone()
    win = audio_windows(feats, margin=2)
    assert tuple(win.shape) == (6, 5, 3, 4)
    assert win[0, :, 0, 0].tolist() == [0, 0, 0, 1, 2]
    assert win[3, :, 0, 0].tolist() == [1, 2, 3, 4, 5]
    assert win[5, :, 0, 0].tolist() == [3, 4, 5, 5, 5]


# ------------------------------------------------------------------------------------------------ wav2vec2
def test_encoder_pieces_equal_the_model_forward(w2v):
    x = w2v.normalize(np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1)
    with torch.inference_mode():
        inp = torch.from_numpy(x)[None]
        ref = w2v.model(inp, output_hidden_states=True).hidden_states
        ours = w2v._encode(w2v.model.feature_extractor(inp).transpose(1, 2))
    layers = w2v.model.config.num_hidden_layers
    assert len(ref) == layers + 1 and tuple(ours.shape[1:]) == (layers, w2v.model.config.hidden_size)
    torch.testing.assert_close(ours, torch.stack(ref[1:], dim=2)[0])


def test_normalization_is_zero_mean_unit_variance(w2v):
    x = w2v.normalize(3.0 + 0.5 * np.random.default_rng(1).standard_normal(8000).astype(np.float32))
    assert abs(x.mean()) < 1e-3 and abs(x.std() - 1.0) < 1e-2


@pytest.mark.parametrize("samples", [16000, 16001, 23456, 640])
def test_feature_length_is_25fps(w2v, samples):
    wave = np.random.default_rng(samples).standard_normal(samples).astype(np.float32) * 0.1
    out = w2v.extract(wave)
    n = math.ceil(samples / 16000 * 25)
    assert out.num_frames == n and out.features.shape[0] == n
    padded = w2v.extract(wave, clip_length=16)
    assert padded.num_frames == n and padded.features.shape[0] == 16 * math.ceil(n / 16)
    assert padded.features.dtype == torch.float32


def test_padded_features_follow_the_release_order(w2v, monkeypatch):
    """Spec §6.4-6.8 end to end: normalise the real samples, then append (16 - N % 16) * 640 zeros, CNN features
    linearly interpolated (align_corners=True) to the padded N before feature_projection, hidden_states[1:].
    The reference is the model's own forward with the interpolation hooked in after the CNN."""
    import torch.nn.functional as F

    wave = np.random.default_rng(3).standard_normal(23456).astype(np.float32) * 0.1 + 0.05
    n = math.ceil(23456 / 16000 * 25)  # 37 -> padded to 48
    ours = w2v.extract(wave, clip_length=16).features
    x = np.concatenate([w2v.normalize(wave), np.zeros((16 - n % 16) * 640, np.float32)])
    fe = w2v.model.feature_extractor
    plain = fe.forward

    def reference(align_corners, inp):
        monkeypatch.setattr(fe, "forward", lambda v: F.interpolate(plain(v), size=48, mode="linear",
                                                                   align_corners=align_corners))
        with torch.inference_mode():
            hs = w2v.model(torch.from_numpy(inp)[None], output_hidden_states=True).hidden_states
        return torch.stack(hs[1:], dim=2)[0]

    expected = reference(True, x)
    assert ours.shape == expected.shape == (48, w2v.model.config.num_hidden_layers, w2v.model.config.hidden_size)
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)
    # the test can tell the readings apart: align_corners=False, or normalising after padding, differ
    assert (reference(False, x) - ours).abs().max() > 1e-3
    padded_then_normalised = w2v.normalize(np.concatenate([wave, np.zeros(len(x) - len(wave), np.float32)]))
    assert (reference(True, padded_then_normalised) - ours).abs().max() > 1e-3


def test_chunked_equals_single_pass(w2v_root):
    wave = np.random.default_rng(2).standard_normal(16000 * 6).astype(np.float32) * 0.1
    single = Wav2VecFeatures(w2v_root, device="cpu").extract(wave).features  # 150 frames, one pass
    assert single.shape[0] == 150
    # huge context: only the CNN/interpolation are chunked -> equal up to float rounding
    exact = Wav2VecFeatures(w2v_root, device="cpu", chunk_frames=48, context_frames=1000).extract(wave).features
    torch.testing.assert_close(exact, single, atol=1e-4, rtol=1e-4)
    # the default-style setting: chunks + context
    chunked = Wav2VecFeatures(w2v_root, device="cpu", chunk_frames=48, context_frames=32).extract(wave).features
    assert chunked.shape == single.shape
    scale = single.abs().max()
    assert (chunked - single).abs().max() < 0.01 * scale
    # without context the chunk borders show: the comparison above can fail
    bare = Wav2VecFeatures(w2v_root, device="cpu", chunk_frames=48, context_frames=0).extract(wave).features
    assert (bare - single).abs().max() > 5 * (chunked - single).abs().max()


def test_missing_wav2vec_gives_download_report(tmp_path):
    from emocast.errors import MissingModelError

    with pytest.raises(MissingModelError, match="wav2vec"):
        Wav2VecFeatures(tmp_path, device="cpu")


# ------------------------------------------------------------------------------------------------ separation
def test_vocal_separation_offline(tmp_path):
    from emocast.preprocess.separator import VocalSeparator
    from emocast.testing.tiny_separator import write_tiny_separator

    write_tiny_separator(registry.COMPONENTS["audio_separator"].path(tmp_path))
    wave = _tone(1.2, 22050)
    sf.write(tmp_path / "speech.wav", wave.T, 22050, subtype="PCM_16")
    sep = VocalSeparator(tmp_path)
    # audio-separator's process-wide warnings.filterwarnings("ignore") does not leak out
    assert not [f for f in warnings.filters if f[0] == "ignore" and f[1] is None and f[2] is Warning]
    try:
        speech, frames = load_speech(tmp_path / "speech.wav", sep)  # decode -> separate -> 16 kHz mono
        assert speech.ndim == 1 and frames == 30 and abs(len(speech) - 1.2 * 16000) < 64
        assert np.abs(speech).max() > 0.01  # the identity "vocal" model passes the signal through
        import os

        assert os.listdir(sep._workdir.name) == []  # nothing left behind
    finally:
        sep.close()


def test_missing_separator_gives_download_report(tmp_path):
    from emocast.errors import MissingModelError
    from emocast.preprocess.separator import VocalSeparator

    with pytest.raises(MissingModelError, match="audio_separator"):
        VocalSeparator(tmp_path)


def test_separator_needs_ffmpeg_on_path(tmp_path, monkeypatch):
    from emocast.errors import EmoCASTError
    from emocast.preprocess.separator import VocalSeparator
    from emocast.testing.tiny_separator import write_tiny_separator

    write_tiny_separator(registry.COMPONENTS["audio_separator"].path(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(EmoCASTError, match="ffmpeg.*--no_separation"):
        VocalSeparator(tmp_path)
