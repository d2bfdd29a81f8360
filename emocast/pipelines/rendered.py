"""What the Python API returns: a rendered video in memory, and the progress a render reports.

``EmoCASTPipeline.__call__`` returns a :class:`RenderedVideo` (frames, fps and the driving audio as it is muxed);
``.save(path)`` writes it through the one video writer (:class:`emocast.media.video_writer.VideoWriter`), so the
file is the one ``EmoCASTPipeline.render`` streams for the same frames. A render's ``callback`` gets a
:class:`RenderProgress` after every denoising step of every clip (built from the sampler's per-step
:class:`~emocast.pipelines.denoise.StepState`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from .denoise import StepState


@dataclass
class RenderProgress:
    """One denoising step of a render: ``step`` of ``total`` (all clips' steps), in clip ``clip`` of ``clips``."""

    step: int  # steps done so far in this video, 1-based
    total: int  # clips x steps
    clip: int  # 0-based clip index
    clips: int
    state: StepState = field(repr=False)

    @property
    def fraction(self) -> float:
        return self.step / max(self.total, 1)


@dataclass
class RenderedVideo:
    """A rendered talking-portrait video.

    ``frames``: ``(N, H, W, 3)`` uint8 RGB; ``fps``: frames per second; ``audio``: the driving audio
    ``(channels, samples)`` float32 at ``audio_rate`` (cut to the video's length when saved).
    """

    frames: np.ndarray
    fps: int | Fraction
    audio: np.ndarray | None = None
    audio_rate: int | None = None

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def duration(self) -> float:
        return len(self.frames) / float(self.fps)

    def save(self, path, crf: int = 18) -> Path:
        """Write an H.264 MP4 with the audio as AAC (atomic: ``<path>.partial`` renamed); returns the path."""
        from ..media.video_writer import VideoWriter

        audio = {} if self.audio is None else {"audio_array": self.audio, "audio_rate": self.audio_rate}
        with VideoWriter(path, fps=self.fps, crf=crf, **audio) as writer:
            writer.write(self.frames)
        return Path(path)
