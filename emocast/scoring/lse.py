"""LSE-D / LSE-C: SyncNet's audio-visual offset search, computed the way syncnet_python does it.

For a video of ``T`` frames (25 fps) and 16 kHz audio of ``S`` samples:

1. ``n = min(T, floor(S / 640)) - 5`` windows; window ``i`` is video frames ``i..i+4`` and MFCC columns
   ``4i..4i+19`` (syncnet_python's ``lastframe = min_length - 5`` and ``range(0, lastframe)``).
2. Each window gives a video and an audio embedding (:class:`~emocast.scoring.syncnet.SyncNet`).
3. For every video window ``i`` the Euclidean distances (``torch.nn.functional.pairwise_distance``, which adds
   1e-6 to the difference) to the audio embeddings ``i - vshift .. i + vshift`` are taken; the audio sequence is
   zero-padded by ``vshift`` rows at both ends, so out-of-range shifts compare with a zero vector.
4. The distances are averaged over windows -> a curve over the ``2 * vshift + 1`` shifts (``vshift = 15``).
   ``min_dist`` (LSE-D) is its minimum, ``offset = vshift - argmin`` (positive: audio leads), and
   ``confidence`` (LSE-C) = median of the curve - its minimum.

A dataset's LSE-D / LSE-C are the means of the per-video values (Wav2Lip's evaluation scripts).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from .syncnet import FRAMES_PER_WINDOW, MFCC_PER_FRAME, MFCC_PER_WINDOW, SyncNet

VSHIFT = 15
SAMPLES_PER_FRAME = 640  # 16000 Hz / 25 fps


@dataclass(frozen=True)
class SyncResult:
    offset: int  # frames; positive = audio leads the video
    min_dist: float  # LSE-D
    confidence: float  # LSE-C
    num_windows: int


def num_windows(num_frames: int, num_samples: int) -> int:
    return min(num_frames, num_samples // SAMPLES_PER_FRAME) - FRAMES_PER_WINDOW


def shift_distances(video_emb: torch.Tensor, audio_emb: torch.Tensor, vshift: int = VSHIFT) -> torch.Tensor:
    """``(N, 2*vshift+1)``: distance of video window ``i`` to audio window ``i + s - vshift`` (zero-padded)."""
    if video_emb.shape != audio_emb.shape:
        raise ValueError(f"embedding shapes differ: {tuple(video_emb.shape)} vs {tuple(audio_emb.shape)}")
    width = 2 * vshift + 1
    padded = F.pad(audio_emb, (0, 0, vshift, vshift))
    rows = [F.pairwise_distance(video_emb[i:i + 1].expand(width, -1), padded[i:i + width])
            for i in range(video_emb.shape[0])]
    return torch.stack(rows, 0)


def sync_scores(dists: torch.Tensor, vshift: int = VSHIFT) -> SyncResult:
    """Offset, minimum mean distance and confidence from the ``(N, 2*vshift+1)`` distance matrix."""
    mean = dists.mean(0)
    minval, minidx = torch.min(mean, 0)
    conf = torch.median(mean) - minval
    return SyncResult(offset=int(vshift - int(minidx)), min_dist=float(minval), confidence=float(conf),
                      num_windows=int(dists.shape[0]))


def audio_windows(mfcc: np.ndarray, n: int) -> torch.Tensor:
    """``(n, 1, 13, 20)`` MFCC windows starting at column ``4i``."""
    cc = torch.from_numpy(np.ascontiguousarray(mfcc, dtype=np.float32))
    return torch.stack([cc[:, MFCC_PER_FRAME * i: MFCC_PER_FRAME * i + MFCC_PER_WINDOW] for i in range(n)])[:, None]


def video_windows(frames_bgr: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """``(stop-start, 3, 5, H, W)`` from ``frames_bgr`` ``(T, 3, H, W)`` float 0..255."""
    return torch.stack([frames_bgr[i:i + FRAMES_PER_WINDOW].permute(1, 0, 2, 3) for i in range(start, stop)])


@torch.no_grad()
def embed(model: SyncNet, crops_bgr: np.ndarray, mfcc: np.ndarray, n: int, batch_size: int = 20,
          device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Video and audio embeddings ``(n, D)`` of the first ``n`` windows."""
    frames = torch.from_numpy(np.ascontiguousarray(crops_bgr)).permute(0, 3, 1, 2).float()
    aud = audio_windows(mfcc, n)
    dtype = next(model.parameters()).dtype
    v_out, a_out = [], []
    for s in range(0, n, batch_size):
        e = min(n, s + batch_size)
        v_out.append(model.embed_video(video_windows(frames, s, e).to(device, dtype)).float().cpu())
        a_out.append(model.embed_audio(aud[s:e].to(device, dtype)).float().cpu())
    return torch.cat(v_out), torch.cat(a_out)


def evaluate_sync(model: SyncNet, crops_bgr: np.ndarray, audio_int16: np.ndarray, mfcc_fn=None,
                  vshift: int = VSHIFT, batch_size: int = 20, device="cpu", name: str = "video") -> SyncResult:
    """LSE for one video: ``crops_bgr`` ``(T, 224, 224, 3)`` uint8 BGR face crops, 16 kHz mono int16 audio."""
    from .mfcc import mfcc as default_mfcc

    n = num_windows(len(crops_bgr), len(audio_int16))
    if n <= 0:
        raise InputError(f"{name}: too short for SyncNet ({len(crops_bgr)} frames, "
                         f"{len(audio_int16) / 16000:.2f} s of audio); it needs at least 6 frames (0.24 s) of both")
    cc = (mfcc_fn or default_mfcc)(audio_int16)
    v, a = embed(model, crops_bgr, cc, n, batch_size=batch_size, device=device)
    return sync_scores(shift_distances(v, a, vshift), vshift)
