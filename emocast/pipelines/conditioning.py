"""The one owner of a denoising step: which conditions each batch row keeps, and the network call.

Every place that runs the denoising UNet — the sampler's conditional and unconditional CFG rows, training's rows
with per-sample dropped conditions, validation, the benchmark — builds its step here, from one conditioning and
per-row *keep masks* (:class:`Keep`). A row that drops a condition gets exactly what the release's unconditional
CFG row gets for it:

============  ============================================  ==================================================
condition     kept                                          dropped
============  ============================================  ==================================================
text          CLIP(prompt) in the cross-attention and as     CLIP("") (``uncond_text_emb``) in both places
              the queries of the emotive audio attention
face          ``imageproj(face_emb)``                        ``imageproj(0)``
face_region   the FaceLocator feature                        zeros
audio         ``audioproj(windows)``                         zero audio tokens
reference     self-attention also over the reference tokens  plain self-attention (motion-frame tokens kept)
============  ============================================  ==================================================

(The release queries its emotive audio attention with the prompt in both CFG rows; with zero audio tokens the
attention returns its output bias whatever the queries, so the two rules give identical unconditional rows.)

Three calls, from slowest-changing to fastest::

    video = prepare_video(net, text_emb=..., uncond_text_emb=..., face_emb=..., face_region=...,
                          full_masks=..., face_masks=..., lip_masks=..., keep=Keep.rows(False, True))
    clip = prepare_clip(net, video, ref_latents=..., audio_windows=...)         # audio projection, reference pass
    out = model_output(net, video, clip, latents, t, audio_weights=(1.0, 1.0, 1.0))   # (B, 4, F, h, w)
    v = guide(out, 3.5)                                                          # CFG mix of [uncond, cond]

Inputs may have one row (shared by every row of the step, e.g. the sampler's one video) or one per row (training's
batch). Without ``audio_windows`` the step is the image stage's (stage 1): the UNet's audio and motion modules
neither run nor need masks, and the reference pass is skipped when no row keeps the reference.

Without gradients (inference, validation) :func:`prepare_clip` also does, once, all the UNet's work that is the same
at every step of the clip (:mod:`emocast.models.step_cache`: cross-attention, reference and audio keys/values,
the motion frames' features); a later clip given the first clip's :meth:`ClipConditioning.video_reference` reuses
the reference image's share of it (then only the motion frames run through the ReferenceNet). :func:`model_output` runs any subset of the rows
(``rows``: a guidance plan step that needs only the conditional row) and DeepCache passes (``deep``).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Sequence

import torch

from ..models.net import EmoCASTNet
from ..models.reference_net import ReferenceFeatures
from ..models.spatial_transformer import Segment, reference_segments
from ..models.step_cache import StepCache, take_rows
from ..models.unet_blocks import DeepFeatures

CONDITIONS = ("reference", "audio", "text", "face", "face_region")
NO_TEXT = tuple(c for c in CONDITIONS if c != "text")  # separate guidance's middle row: the audio, not the emotion


@dataclass
class Keep:
    """Per-row keep masks, each ``(B,)`` bool: ``True`` = the row keeps that condition. Best kept on the CPU: the
    step decides on the host what to compute (a condition kept by every row or by none), and moves a mask to the
    network's device only where tensors are mixed by it."""

    reference: torch.Tensor
    audio: torch.Tensor
    text: torch.Tensor
    face: torch.Tensor
    face_region: torch.Tensor

    @classmethod
    def rows(cls, *keep: bool, device=None) -> "Keep":
        """Rows that keep everything (``True``) or nothing (``False``): ``Keep.rows(False, True)`` = CFG's
        [unconditional, conditional]."""
        mask = torch.tensor([bool(k) for k in keep], dtype=torch.bool, device=device)
        return cls(**{c: mask for c in CONDITIONS})

    @classmethod
    def of(cls, *rows, device=None) -> "Keep":
        """Rows that each keep the named conditions: ``Keep.of((), NO_TEXT, CONDITIONS)`` = separate guidance's
        [nothing, everything but the emotive text, everything]."""
        unknown = {c for row in rows for c in row} - set(CONDITIONS)
        if unknown:
            raise ValueError(f"unknown condition(s) {sorted(unknown)}; known: {CONDITIONS}")
        return cls(**{c: torch.tensor([c in row for row in rows], dtype=torch.bool, device=device)
                      for c in CONDITIONS})

    @classmethod
    def from_dict(cls, masks: dict, device=None) -> "Keep":
        return cls(**{c: torch.as_tensor(masks[c], dtype=torch.bool, device=device) for c in CONDITIONS})

    def as_dict(self) -> dict[str, torch.Tensor]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def to(self, device) -> "Keep":
        return Keep(**{k: v.to(device) for k, v in self.as_dict().items()})

    @property
    def batch(self) -> int:
        return int(self.text.shape[0])

    def flags(self) -> dict[str, tuple[bool, ...]]:
        """The masks as Python booleans (read once, on the device the masks are on)."""
        return {name: tuple(bool(v) for v in mask.tolist()) for name, mask in self.as_dict().items()}


def guidance_keep(guidance: bool, device=None) -> Keep:
    """The sampler's rows: [unconditional, conditional] with classifier-free guidance, else [conditional]."""
    return Keep.rows(False, True, device=device) if guidance else Keep.rows(True, device=device)


#: the rows a sampler step may run, by name (:meth:`emocast.pipelines.sampler.SamplerSettings.row_names`)
ROWS = {"nothing": (), "no_text": NO_TEXT, "everything": CONDITIONS}


def named_keep(names: Sequence[str], device=None) -> Keep:
    """Keep masks of rows named in :data:`ROWS`, e.g. ``("nothing", "no_text", "everything")``."""
    return Keep.of(*(ROWS[n] for n in names), device=device)


@dataclass
class VideoConditioning:
    """Per-video (slow-changing) conditioning of a step, one row per batch row."""

    encoder_hidden_states: torch.Tensor  # (B, 77 + K, D): text first, face last
    emo_text: torch.Tensor  # (B, 77, D): queries of the emotive audio attention (the row's text)
    face_locator_feature: torch.Tensor  # (B, C0, 1, h, w)
    masks: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] | None  # level -> (full, face, lip), (B, HW)
    keep: Keep
    face_tokens: torch.Tensor  # (1|B, K, D): the face tokens of the given face embedding(s) (for inspection)
    flags: dict[str, tuple[bool, ...]] = field(default_factory=dict)  # ``keep`` as Python booleans

    @property
    def batch(self) -> int:
        return self.encoder_hidden_states.shape[0]

    @property
    def guidance(self) -> bool:
        """True for the sampler's [unconditional, conditional] rows."""
        return self.batch == 2 and all(v == (False, True) for v in self.flags.values())


@dataclass
class VideoReference:
    """The reference image's share of the reference pass, the same for every clip of a video
    (:meth:`ClipConditioning.video_reference` of the first clip): its ReferenceNet records and, without gradients,
    the UNet's keys/values of them and of the text/face tokens."""

    tokens: dict[str, torch.Tensor]  # path -> (B, HW, C), slot 0 of the reference batch
    pairing: str
    bank_dtype: torch.dtype | None
    slots: int  # 1 + motion frames of the reference batch it belongs to
    cache: StepCache | None  # the per-video part of the step cache


@dataclass
class ClipConditioning:
    """Per-clip conditioning: the projected audio tokens (None in the image stage) and the reference pass."""

    audio_tokens: torch.Tensor | None  # (B, F, A, Da)
    reference: ReferenceFeatures | None
    reference_rows: torch.Tensor | None  # (B,) bool, None = every row attends to the reference
    attends: tuple[bool, ...] = ()  # per row: attends to the reference tokens
    cache: StepCache | None = None  # the UNet's step-invariant work (built without gradients)
    bank_dtype: torch.dtype | None = None
    slots: int = 0  # 1 + motion frames of the reference batch
    _per_rows: dict = field(default_factory=dict, repr=False, compare=False)

    def video_reference(self) -> VideoReference | None:
        """What of this clip's reference pass every later clip of the video can reuse (pass it to their
        :func:`prepare_clip`)."""
        if self.reference is None:
            return None
        return VideoReference(self.reference.reference, self.reference.pairing, self.bank_dtype, self.slots,
                              None if self.cache is None else self.cache.video_part())

    @property
    def frames(self) -> int | None:
        return None if self.audio_tokens is None else self.audio_tokens.shape[1]

    @property
    def temporal(self) -> bool:
        return self.audio_tokens is not None

    @property
    def batch(self) -> int:
        return len(self.attends)

    def segments(self, rows: tuple[int, ...], frames: int, device) -> tuple[Segment, ...] | None:
        """The self-attention layout of a step over ``rows`` (memoised per rows and frames)."""
        if self.reference is None:
            return None
        key = ("segments", rows, frames)
        if key not in self._per_rows:
            self._per_rows[key] = reference_segments(self.attends, rows, self.batch, frames,
                                                     self.reference.pairing == "release", device)
        return self._per_rows[key]

    def cache_for(self, rows: tuple[int, ...]) -> StepCache | None:
        """:attr:`cache` of the rows ``rows`` (memoised)."""
        if self.cache is None:
            return None
        key = ("cache", rows)
        if key not in self._per_rows:
            self._per_rows[key] = self.cache.select(rows)
        return self._per_rows[key]


def _rows(x: torch.Tensor, batch: int, what: str) -> torch.Tensor:
    """``x`` with one row per batch row: a single row is expanded (no copy), ``batch`` rows pass."""
    if x.shape[0] == batch:
        return x
    if x.shape[0] == 1:
        return x.expand(batch, *x.shape[1:])
    raise ValueError(f"{what} has {x.shape[0]} rows; expected 1 or {batch} (the step's batch)")


def keep_rows(x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """``x`` (B, ...) with the rows of ``keep == False`` set to exactly zero (differentiable, no in-place write)."""
    shape = (x.shape[0],) + (1,) * (x.dim() - 1)
    return x * keep.to(device=x.device, dtype=x.dtype).reshape(shape)


def _level_mask(mask: torch.Tensor, batch: int) -> torch.Tensor:
    """A level mask (HW,), (1, HW), (B, HW) or (B, F, HW) -> one row (or row of frames) per batch row."""
    if mask.dim() == 1:
        mask = mask[None]
    return _rows(mask, batch, "a mask")


def prepare_video(net: EmoCASTNet, *, text_emb: torch.Tensor, face_emb: torch.Tensor, face_region: torch.Tensor,
                  full_masks: Sequence[torch.Tensor] | None = None, face_masks: Sequence[torch.Tensor] | None = None,
                  lip_masks: Sequence[torch.Tensor] | None = None, uncond_text_emb: torch.Tensor | None = None,
                  guidance: bool = True, keep: Keep | None = None) -> VideoConditioning:
    """The per-video part of the step for the rows of ``keep`` (default: :func:`guidance_keep` of ``guidance``).

    text_emb / uncond_text_emb: (1|B, 77, D) CLIP ``last_hidden_state`` of the prompt(s) and of "" (needed when a
    row drops the text); face_emb: (1|B, 512) raw identity embedding(s); face_region: (1|B, 3, H, W) FaceLocator
    input in [0, 1]; *_masks: one mask per UNet level, each (HW,), (1|B, HW) or (B, F, HW), row-major, level 0 =
    latent resolution (None in the image stage).
    """
    dtype, device = net.dtype, net.device
    keep = keep if keep is not None else guidance_keep(guidance)
    flags = keep.flags()  # the masks stay on the CPU: host-side decisions without device syncs
    b = keep.batch
    cast = lambda t: t.to(device=device, dtype=dtype)  # noqa: E731
    text = _rows(cast(text_emb), b, "text_emb")
    if not all(flags["text"]):
        if uncond_text_emb is None:
            raise ValueError("a row that drops the text needs uncond_text_emb (the CLIP embedding of \"\")")
        text = torch.where(keep.text.to(device)[:, None, None], text,
                           _rows(cast(uncond_text_emb), b, "uncond_text_emb"))
    face_emb = cast(face_emb).reshape(face_emb.shape[0], -1)
    face_tokens = net.imageproj(face_emb)  # computed on the given rows only (one row for the sampler's video)
    row_face_tokens = _rows(face_tokens, b, "face_emb")
    if not all(flags["face"]):
        dropped = net.imageproj(torch.zeros_like(face_emb[:1]))
        row_face_tokens = torch.where(keep.face.to(device)[:, None, None], row_face_tokens, dropped)
    feature = keep_rows(_rows(net.face_locator(cast(face_region)).unsqueeze(2), b, "face_region"), keep.face_region)
    masks = None
    if full_masks is not None:
        if not (len(full_masks) == len(face_masks) == len(lip_masks)):
            raise ValueError("full_masks, face_masks and lip_masks must have one entry per UNet level")
        masks = {level: tuple(_level_mask(cast(m), b) for m in triple)
                 for level, triple in enumerate(zip(full_masks, face_masks, lip_masks))}
    return VideoConditioning(encoder_hidden_states=torch.cat([text, row_face_tokens], dim=1), emo_text=text,
                             face_locator_feature=feature, masks=masks, keep=keep, face_tokens=face_tokens,
                             flags=flags)


def _reference_needed(video: VideoConditioning, temporal: bool) -> bool:
    return temporal or any(video.flags["reference"])  # the video stage always needs the motion-frame tokens


def _grad_for_reference(net: EmoCASTNet, video: VideoConditioning) -> bool:
    """No autograd graph through a frozen ReferenceNet unless its conditioning needs the gradient."""
    needs = video.encoder_hidden_states.requires_grad or any(p.requires_grad for p in net.reference_unet.parameters())
    return needs and torch.is_grad_enabled()


def prepare_clip(net: EmoCASTNet, video: VideoConditioning, *, ref_latents: torch.Tensor,
                 audio_windows: torch.Tensor | None = None, pairing: str = "release",
                 bank_dtype: torch.dtype | None = None, cache: bool | None = None,
                 reference: VideoReference | None = None) -> ClipConditioning:
    """The per-clip part: project the audio and run the reference pass (timestep 0).

    ref_latents: (1+M, 4, h, w) shared by every row, or (B, 1+M, 4, h, w): VAE latents of the reference image then
    the M motion frames; audio_windows: (1|B, F, window, layers, channels) wav2vec2 windows of the clip's frames,
    None for the image stage; pairing: see :meth:`EmoCASTNet.reference_features` (``"release"`` reproduces the
    checkpoint's behaviour). cache: also compute the UNet's step-invariant work once
    (:meth:`~emocast.models.denoising_unet.DenoisingUNet.step_cache`; default: when gradients are off).
    reference: :meth:`ClipConditioning.video_reference` of an earlier clip of the video (slot 0 of ``ref_latents``
    must be the same image): the ReferenceNet then runs on the motion frames only (it treats each image on its own,
    so the records are those of the whole pass up to float rounding), and the per-video keys/values are reused.
    """
    flags = video.flags
    tokens = None
    if audio_windows is not None:
        projected = net.audioproj(audio_windows.to(device=net.device, dtype=net.dtype))
        tokens = keep_rows(_rows(projected, video.batch, "audio_windows"), video.keep.audio)
    features = None
    if reference is not None:
        slots = ref_latents.shape[-4]
        if (reference.pairing, reference.bank_dtype, reference.slots) != (pairing, bank_dtype, slots):
            raise ValueError(f"the video reference was prepared for pairing {reference.pairing}, bank dtype "
                             f"{reference.bank_dtype} and {reference.slots} slots; this clip has {pairing}, "
                             f"{bank_dtype} and {slots}")
    if _reference_needed(video, tokens is not None):
        with torch.set_grad_enabled(_grad_for_reference(net, video)):
            features = net.reference_features(ref_latents.to(device=net.device), video.encoder_hidden_states,
                                              pairing=pairing, bank_dtype=bank_dtype,
                                              reference=None if reference is None else reference.tokens)
    rows = None if features is None or all(flags["reference"]) else video.keep.reference
    step_cache = None
    if (not torch.is_grad_enabled()) if cache is None else cache:
        step_cache = net.denoising_unet.step_cache(
            video.encoder_hidden_states, features, tokens, video.emo_text if tokens is not None else None,
            temporal=tokens is not None, reuse=None if reference is None else reference.cache)
    return ClipConditioning(audio_tokens=tokens, reference=features, reference_rows=rows,
                            attends=flags["reference"], cache=step_cache, bank_dtype=bank_dtype,
                            slots=ref_latents.shape[-4])


def model_output(net: EmoCASTNet, video: VideoConditioning, clip: ClipConditioning, latents: torch.Tensor,
                 timestep, audio_weights: Sequence[float] = (1.0, 1.0, 1.0), rows: Sequence[int] | None = None,
                 deep: DeepFeatures | None = None, *, guidance_scale=None, unet=None) -> torch.Tensor:
    """The denoising UNet's prediction for latents (1|R, 4, F, h, w) at ``timestep``: (R, 4, F, h, w), one row per
    row of the step in ``rows`` (indices into the video's rows; default all R = B rows). ``audio_weights``: (pose,
    face, lip) weights of the three audio branches; ``deep``: DeepCache features of these rows
    (:class:`~emocast.models.unet_blocks.DeepFeatures`); ``guidance_scale`` (scalar or one per video row): the
    guidance a consistency student folds in (students only, :attr:`EmoCASTNet.is_student`); ``unet``: another
    denoising UNet of the same architecture on this conditioning (distillation's frozen teacher and EMA target;
    default ``net.denoising_unet``; the clip's step cache belongs to that one and is not used for another)."""
    b = video.batch
    unet = net.denoising_unet if unet is None else unet
    rows = tuple(range(b)) if rows is None else tuple(int(r) for r in rows)
    latents = latents.to(device=net.device, dtype=net.dtype)
    frames = latents.shape[2]
    if clip.temporal and frames != clip.frames:
        raise ValueError(f"latents have {frames} frames but the clip's audio has {clip.frames}")
    sample = _rows(latents, len(rows), "latents")
    pick = lambda x: None if x is None else take_rows(x, rows, b)  # noqa: E731
    masks = {lv: tuple(pick(m) for m in triple) for lv, triple in video.masks.items()} \
        if clip.temporal else None
    segments = clip.segments(rows, frames, net.device)
    cache = clip.cache_for(rows) if unet is net.denoising_unet else None
    use = cache is None  # without a cache the UNet derives everything from the conditioning
    reference = clip.reference
    if use and reference is not None and len(rows) != b:  # reference tokens are read through the segments
        reference = ReferenceFeatures(reference.reference, {p: pick(t) for p, t in reference.motion.items()},
                                      reference.pairing)
    if isinstance(guidance_scale, torch.Tensor) and guidance_scale.numel() > 1:
        guidance_scale = take_rows(guidance_scale.reshape(-1), rows, b)
    return unet(sample, timestep, pick(video.encoder_hidden_states) if use else None,
                pick(clip.audio_tokens) if use else None,
                pick(video.emo_text) if use and clip.temporal else None, masks,
                face_locator_feature=pick(video.face_locator_feature), reference=reference,
                audio_weights=audio_weights, temporal=clip.temporal, cache=cache,
                segments=segments, deep=deep, guidance_scale=guidance_scale)


def guide(output: torch.Tensor, scale: float | Sequence[float] | torch.Tensor) -> torch.Tensor:
    """Classifier-free guidance of a step's predictions ``o_0..o_n`` (rows of ``output``) with the chain of scales
    ``o_0 + s_1 (o_1 - o_0) + ... + s_n (o_n - o_{n-1})`` (:mod:`emocast.pipelines.plan`): for [uncond, cond] and
    one scale the release's ``uncond + scale * (cond - uncond)``; a single (unguided) row is returned unchanged.
    A tensor ``scale`` of shape (B,) guides a [B unconditional rows, B conditional rows] output pairwise
    (distillation's per-sample guidance scales)."""
    if output.shape[0] == 1:
        return output
    if isinstance(scale, torch.Tensor):
        uncond, cond = output.chunk(2)
        scale = scale.to(device=output.device, dtype=output.dtype).reshape(-1, *([1] * (output.dim() - 1)))
        return uncond + scale * (cond - uncond)
    scales = (float(scale),) if isinstance(scale, (int, float)) else tuple(float(s) for s in scale)
    if len(scales) != output.shape[0] - 1:
        raise ValueError(f"{output.shape[0]} rows need {output.shape[0] - 1} guidance scales, got {scales}")
    rows = output.chunk(output.shape[0])
    mixed = rows[0]
    for prev, cur, s in zip(rows, rows[1:], scales):
        mixed = mixed + s * (cur - prev)
    return mixed
