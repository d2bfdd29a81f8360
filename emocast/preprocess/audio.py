"""Driving audio: decoding, checks, wav2vec2 features at 25 fps and the +-2 frame windows (spec §6).

- :func:`load_audio`: anything FFmpeg decodes (:func:`emocast.media.audio.decode_audio`), any rate/channel
  count -> float32 ``(channels, samples)`` and its rate. Missing, corrupt, audio-less, empty, silent (peak below
  ``SILENCE_PEAK`` = -80 dBFS) and sub-frame (shorter than 1/25 s) inputs raise :class:`InputError`.
- :func:`load_speech`: that, optionally vocal-separated, resampled to 16 kHz with FFmpeg's resampler and averaged
  to mono (:mod:`emocast.media.audio`; what ``librosa.load`` does after the release's ``ffmpeg -ar 16000``).
- :func:`num_frames` ``N = ceil(samples / 16000 * 25)``; :func:`pad_to_clip` (spec §6.6).
- :class:`Wav2VecFeatures`: wav2vec2-base-960h through its public pieces (``feature_extractor`` ->
  linear interpolation to N frames, ``align_corners=True`` -> ``feature_projection`` -> ``encoder`` with
  ``output_hidden_states``) -> ``hidden_states[1:]`` -> ``(N, 12, 768)``. See the class for chunking.
- :func:`audio_windows`: frame i -> frames i-2..i+2 with clamped indices -> ``(N, 5, 12, 768)``.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import registry
from ..errors import ConfigError, InputError, UnreadableMedia
from ..media.audio import decode_audio, resample, to_mono
from .quiet import quiet_transformers

SAMPLE_RATE = 16000
FPS = 25
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS  # 640
SILENCE_PEAK = 1e-4  # -80 dBFS
CLIP_LENGTH = 16
COMPONENT = "wav2vec"
FIX_AUDIO = "use a speech recording in a common format (WAV, MP3, M4A/AAC, FLAC, OGG, or a video file with sound)"


# ------------------------------------------------------------------------------------------------ decoding
def load_audio(path, check: bool = True) -> tuple[np.ndarray, int]:
    """Decode the first audio stream of ``path`` -> (float32 ``(channels, samples)``, sample rate)."""
    p = Path(path)
    if p.is_dir():
        raise InputError(f"the driving audio {p} is a folder. Fix: pass an audio file (--driving_audio).")
    if not p.is_file():
        raise InputError(f"driving audio not found: {p}. Fix: check the path (--driving_audio).")
    if p.stat().st_size == 0:
        raise InputError(f"driving audio is an empty file: {p}. Fix: {FIX_AUDIO}.")
    try:
        decoded = decode_audio(p)
    except UnreadableMedia as err:
        raise InputError(f"cannot decode the driving audio {p}: {err.problem}. Fix: {FIX_AUDIO}.") from None
    if decoded is None:
        raise InputError(f"{p} has no audio stream. Fix: {FIX_AUDIO}.")
    wave, rate = decoded
    if check:
        check_audio(wave, rate, source=str(p))
    return wave, rate


def check_audio(wave: np.ndarray, rate: int, source: str = "the driving audio") -> None:
    """:class:`InputError` for empty, sub-frame (< 1/25 s) or silent audio."""
    samples = wave.shape[-1]
    if samples == 0:
        raise InputError(f"{source} contains no audio samples. Fix: {FIX_AUDIO}.")
    if samples / rate < 1.0 / FPS:
        raise InputError(f"{source} is too short ({samples / rate * 1000:.1f} ms): at least one video frame (40 ms) "
                         "of audio is needed. Fix: use a longer recording.")
    peak = float(np.abs(wave).max())
    if not np.isfinite(peak) or peak < SILENCE_PEAK:
        raise InputError(f"{source} is silent (peak level {20 * math.log10(max(peak, 1e-12)):.0f} dBFS), so there "
                         "is no speech to drive the lips. Fix: use a speech recording.")


def load_speech(path, separator=None) -> tuple[np.ndarray, int]:
    """``path`` -> (16 kHz mono float32 speech, N video frames). ``separator`` (a VocalSeparator) is optional."""
    wave, rate = load_audio(path)
    if separator is not None:  # straight to 16 kHz mono, chunk by chunk (memory flat in the audio's length)
        wave, rate = separator.separate(wave, rate, source=str(path), out_rate=SAMPLE_RATE, mono=True)
        if wave.size == 0 or float(np.abs(wave).max()) < SILENCE_PEAK:
            warnings.warn(f"vocal separation found no voice in {path}: the lips will barely move. If the file is "
                          "clean speech, run without separation (--no_separation).", UserWarning, stacklevel=2)
    speech = to_mono(resample(wave, rate, SAMPLE_RATE))
    return speech, num_frames(len(speech))


# ------------------------------------------------------------------------------------------------ frames
def num_frames(samples: int, sample_rate: int = SAMPLE_RATE, fps: int = FPS) -> int:
    """Video frames covered by the audio: ``ceil(samples / sample_rate * fps)``."""
    return int(math.ceil(samples / sample_rate * fps))


def pad_to_clip(wave: np.ndarray, frames: int, clip_length: int = CLIP_LENGTH) -> tuple[np.ndarray, int]:
    """Spec §6.6: if ``frames % clip_length``, append ``(clip_length - frames % clip_length) * 640`` zero samples
    to the (normalised) waveform; returns (waveform, padded frame count)."""
    rest = frames % clip_length
    if rest == 0:
        return wave, frames
    extra = clip_length - rest
    return np.concatenate([wave, np.zeros(extra * SAMPLES_PER_FRAME, wave.dtype)]), frames + extra


def audio_windows(features, start: int = 0, stop: int | None = None, margin: int = 2):
    """The audio window of every frame ``start..stop-1`` (default: all): ``(stop-start, 2*margin+1, ...)`` =
    feature rows ``i-margin..i+margin``, indices clamped to the whole sequence ``[0, N-1]`` (a clip boundary sees
    its real neighbours; only the ends of the audio repeat a row). The one window function of training,
    inference and validation."""
    import torch

    n = features.shape[0]
    stop = n if stop is None else int(stop)
    idx = torch.arange(int(start), stop)[:, None] + torch.arange(-margin, margin + 1)[None, :]
    return features[idx.clamp_(0, n - 1)]


# ------------------------------------------------------------------------------------------------ wav2vec2
@dataclass
class AudioFeatures:
    """``features`` (N', 12, 768) float32 on the CPU (N' = N, or padded to a clip multiple); ``num_frames`` = N."""

    features: "object"
    num_frames: int


class Wav2VecFeatures:
    """wav2vec2 features at 25 fps from ``<models_root>/wav2vec/wav2vec2-base-960h``.

    Audio up to ``chunk_frames`` video frames (default 1500 = 60 s) is processed in one pass, exactly like the
    release. Longer audio is processed in chunks so memory stays bounded (the release's single pass needs
    memory quadratic in the length): the CNN feature encoder runs per chunk, in blocks of 10 s (each output frame
    computed from its own receptive field, so the blocks change nothing), with its first GroupNorm using
    statistics of the **whole** file (a separate first pass), so the 50 Hz features equal the single pass up to
    float rounding; the interpolation uses the global frame positions; the transformer sees each chunk of
    ``chunk_frames`` frames plus ``context_frames`` (default 100 = 4 s) of real neighbours on each side, which
    are dropped from the output. Only the transformer's attention is thereby limited to chunk + context.
    """

    def __init__(self, models_root=None, device=None, dtype=None, chunk_frames: int = 1500,
                 context_frames: int = 100):
        folder = registry.component_dir(COMPONENT, models_root)
        import torch
        from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2Model

        from ..runtime import select_device

        self.device = select_device(device)
        self.dtype = dtype or torch.float32
        self.chunk_frames = int(chunk_frames)
        self.context_frames = int(context_frames)
        self.cnn_block_frames = 500  # 50 Hz CNN frames per block of the chunked path (10 s)
        with quiet_transformers():  # the CTC head of wav2vec2-base-960h is unused: no load report for it
            self.processor = Wav2Vec2FeatureExtractor.from_pretrained(folder, local_files_only=True)
            self.model = Wav2Vec2Model.from_pretrained(folder, local_files_only=True)
        self.model.to(self.device, self.dtype).eval()
        cfg = self.model.config
        if cfg.do_stable_layer_norm:
            raise ConfigError(f"{folder} holds a wav2vec2 'stable layer norm' (large) model; EmoCAST uses the "
                              "base architecture (facebook/wav2vec2-base-960h). Fix: "
                              f"{registry.fix_command(COMPONENT, models_root)}")
        self.stride = int(np.prod(cfg.conv_stride))
        rf = cfg.conv_kernel[0]
        for i in range(1, len(cfg.conv_kernel)):
            rf += (cfg.conv_kernel[i] - 1) * int(np.prod(cfg.conv_stride[:i]))
        self.receptive_field = int(rf)

    # -------------------------------------------------------------------------------------------- public
    def normalize(self, wave16k: np.ndarray) -> np.ndarray:
        """Wav2Vec2FeatureExtractor: zero mean / unit variance over the whole clip (``do_normalize``)."""
        out = self.processor(np.asarray(wave16k, np.float32), sampling_rate=SAMPLE_RATE).input_values[0]
        return np.asarray(out, np.float32)

    def extract(self, wave16k: np.ndarray, clip_length: int | None = None, progress: bool = False) -> AudioFeatures:
        """16 kHz mono speech -> :class:`AudioFeatures`; ``clip_length`` pads to a multiple (spec §6.6)."""
        frames = num_frames(len(wave16k))
        if frames == 0:
            raise InputError("the driving audio contains no samples. Fix: " + FIX_AUDIO + ".")
        x = self.normalize(wave16k)
        n = frames
        if clip_length:
            x, n = pad_to_clip(x, frames, clip_length)
        feats = self.features(x, n, progress=progress)
        return AudioFeatures(features=feats, num_frames=frames)

    def features(self, normalized: np.ndarray, n: int, progress: bool = False):
        """Normalised waveform -> ``(n, layers, hidden)`` float32 CPU tensor (chunked when ``n > chunk_frames``)."""
        import torch

        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(normalized, np.float32))
            if n <= self.chunk_frames:
                return self._single_pass(x, n)
            return self._chunked(x, n, progress)

    # -------------------------------------------------------------------------------------------- internals
    def _encode(self, cnn_features, keep: slice | None = None):
        """(1, T, 512) CNN features at 25 fps -> (T', layers, hidden) for the frames ``keep``."""
        import torch

        hidden, _ = self.model.feature_projection(cnn_features)
        # the encoder's public pieces, in Wav2Vec2Encoder's order; the output of every layer is kept
        # (= hidden_states[1:] of output_hidden_states=True; checked against the model's own forward in tests)
        enc = self.model.encoder
        h = enc.dropout(enc.layer_norm(hidden + enc.pos_conv_embed(hidden)))
        layers = []
        for layer in enc.layers:
            h = layer(h, attention_mask=None)
            h = h[0] if isinstance(h, tuple) else h
            layers.append(h)
        stacked = torch.stack(layers, dim=2)[0]  # (T, layers, hidden)
        if keep is not None:
            stacked = stacked[keep]
        return stacked.float().cpu()

    def _single_pass(self, x, n: int):
        import torch.nn.functional as F

        inp = x[None].to(self.device, self.dtype)
        cnn = self.model.feature_extractor(inp)  # (1, 512, T50)
        cnn = F.interpolate(cnn, size=n, mode="linear", align_corners=True).transpose(1, 2)
        return self._encode(cnn)

    def _conv_out_len(self, samples: int) -> int:
        length = samples
        for k, s in zip(self.model.config.conv_kernel, self.model.config.conv_stride):
            length = (length - k) // s + 1
        return length

    def _first_layer_stats(self, x):
        """Per-channel mean / variance of the first conv layer's output over the whole file (GroupNorm stats)."""
        import torch

        layer = self.model.feature_extractor.conv_layers[0]
        k, s = layer.conv.kernel_size[0], layer.conv.stride[0]
        total = (len(x) - k) // s + 1
        step = 16000 * 10 // s  # output frames per block (10 s)
        acc = torch.zeros(layer.conv.out_channels, dtype=torch.float64)
        acc2 = torch.zeros_like(acc)
        for f0 in range(0, total, step):
            f1 = min(total, f0 + step)
            seg = x[f0 * s:(f1 - 1) * s + k][None, None].to(self.device, self.dtype)
            y = layer.conv(seg)[0].double().cpu()
            acc += y.sum(dim=1)
            acc2 += (y * y).sum(dim=1)
        mean = acc / total
        var = (acc2 / total - mean * mean).clamp_min(0)
        return mean, var

    def _cnn_frames(self, x, j0: int, j1: int, stats):
        """CNN features of 50 Hz frames j0..j1-1 -> (1, j1-j0, 512), first GroupNorm with global ``stats``."""
        import torch

        fe = self.model.feature_extractor
        seg = x[j0 * self.stride:(j1 - 1) * self.stride + self.receptive_field][None, None].to(self.device, self.dtype)
        first = fe.conv_layers[0]
        if stats is not None:
            mean, var = stats
            y = first.conv(seg)
            norm = first.layer_norm
            y = (y - mean.to(y)[None, :, None]) / torch.sqrt(var.to(y)[None, :, None] + norm.eps)
            y = y * norm.weight[None, :, None] + norm.bias[None, :, None]
            h = first.activation(y)
        else:
            h = first(seg)
        for layer in fe.conv_layers[1:]:
            h = layer(h)
        return h.transpose(1, 2)  # (1, frames, 512)

    def _chunked(self, x, n: int, progress: bool):
        import torch
        from tqdm.auto import tqdm

        total = self._conv_out_len(len(x))
        group_norm = self.model.config.feat_extract_norm == "group"
        stats = self._first_layer_stats(x) if group_norm else None
        scale = (total - 1) / (n - 1) if n > 1 else 0.0
        out = []
        starts = range(0, n, self.chunk_frames)
        for a in tqdm(starts, desc="wav2vec2", unit="chunk", disable=not progress):
            b = min(n, a + self.chunk_frames)
            ca, cb = max(0, a - self.context_frames), min(n, b + self.context_frames)
            pos = torch.arange(ca, cb, dtype=torch.float64) * scale  # align_corners=True source positions
            lo = pos.floor().long().clamp(0, total - 1)
            hi = (lo + 1).clamp(max=total - 1)
            w = (pos - lo.double()).float()
            j0, j1 = int(lo.min()), int(hi.max()) + 1
            block = self.cnn_block_frames  # the CNN in blocks: its activations stay the size of ~10 s of audio
            cnn = torch.cat([self._cnn_frames(x, k, min(j1, k + block), stats)[0].float()
                             for k in range(j0, j1, block)])  # (j1-j0, 512): each frame from its receptive field
            inter = cnn[lo - j0] * (1 - w)[:, None] + cnn[hi - j0] * w[:, None]
            out.append(self._encode(inter[None].to(self.dtype), keep=slice(a - ca, a - ca + (b - a))))
        return torch.cat(out, dim=0)
