"""UNet blocks shared by the ReferenceNet (2D) and the denoising UNet (per-frame 2D + audio + motion modules).

Feature maps are always ``(N, C, h, w)`` with ``N = batch x frames`` (frame index fastest); only the motion
modules regroup frames. Everything a block reads during one forward is passed in a :class:`BlockInputs` built
per call by the owning UNet — nothing is stored on the modules.

Layer order (spec §2.3/§2.4, the released "checkpoint branch"): (up: concat skip) -> resnet -> spatial
transformer -> audio module -> motion module (with the motion-frame features prepended). The motion modules of
the plain (no cross-attention) blocks exist for checkpoint compatibility but never run.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
from diffusers.models.downsampling import Downsample2D
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.resnet import ResnetBlock2D
from diffusers.models.upsampling import Upsample2D
from torch import nn
from torch.utils.checkpoint import checkpoint

from .audio_module import AudioModule
from .configs import NetConfig
from .motion_module import MotionModule
from .small_conv import use_small_map_gemm
from .spatial_transformer import Segment, SpatialTransformer
from .step_cache import StepCache


@dataclass
class DeepFeatures:
    """DeepCache (Ma et al., 2023): the input of the ``depth`` shallowest up blocks (the output of the deep part of
    the UNet). A pass given ``features=None`` runs every block and stores them; a pass given features runs only
    ``conv_in``, the ``depth`` shallowest down blocks and up blocks, reusing them in place of the deep part."""

    depth: int = 1
    features: torch.Tensor | None = None


@dataclass
class BlockInputs:
    """Per-call inputs of the UNet blocks (rows are ``batch x frames``, frame fastest)."""

    temb: torch.Tensor  # (N, time_embed_dim)
    context: torch.Tensor | None  # (B, T+K, D) text + face tokens, one row per batch row
    frames: int = 1
    reference: dict[str, torch.Tensor] | None = None  # block path -> (R, HW, C) reference-image tokens
    segments: tuple[Segment, ...] | None = None  # which frame rows read which reference row (None: no reference)
    motion: dict[str, torch.Tensor] | None = None  # block path -> (B, M, HW, C) motion-frame tokens
    zero_motion_frames: int = 4  # zero frames prepended when no motion tokens are given (Hallo training)
    temporal: bool = False  # run audio and motion modules
    audio: torch.Tensor | None = None  # (N, A, Da)
    text: torch.Tensor | None = None  # (B, 77, Dt) emotive-audio-attention queries, one row per batch row
    masks: dict[int, Sequence[torch.Tensor]] | None = None  # level -> (full, face, lip), each (N, HW)
    audio_weights: Sequence[float] = (1.0, 1.0, 1.0)
    cache: StepCache | None = None  # the clip's step-invariant work (then context/reference/motion/audio/text unused)
    records: dict[str, torch.Tensor] | None = None  # filled with norm1 tokens when not None (reference pass)
    record_only: str | None = None  # block whose norm1 is recorded and whose remaining work is skipped
    use_checkpoint: bool = False

    def run(self, module, *args):
        """Call ``module(*args)``, through activation checkpointing when enabled (same math)."""
        if self.use_checkpoint and torch.is_grad_enabled():
            return checkpoint(module, *args, use_reentrant=False)
        return module(*args)

    def motion_prefix(self, path: str, h: torch.Tensor) -> torch.Tensor:
        """The motion-frame features of block ``path`` as (B, M, C, h, w) in the dtype of ``h``."""
        n, c, hh, ww = h.shape
        if self.motion is None:
            return h.new_zeros(n // self.frames, self.zero_motion_frames, c, hh, ww)
        tokens = self.motion[path]
        b, m = tokens.shape[:2]
        return tokens.to(h.dtype).transpose(2, 3).reshape(b, m, c, hh, ww)


def _transformer_layer(inputs: BlockInputs, h, attn, audio=None, motion=None):
    """spatial transformer -> audio module -> motion module, as the release runs them."""
    if inputs.records is not None and attn.path == inputs.record_only:
        inputs.records[attn.path] = inputs.run(attn.norm1_tokens, h)
        return h
    layer = None if inputs.cache is None else inputs.cache.layers[attn.path]
    reference = None if inputs.reference is None or layer is not None else inputs.reference[attn.path]
    h, norm1 = inputs.run(attn, h, inputs.context, inputs.frames, inputs.segments, reference,
                          None if layer is None else layer.cross, None if layer is None else layer.reference)
    if inputs.records is not None:
        inputs.records[attn.path] = norm1
    if inputs.temporal and audio is not None:
        h = inputs.run(audio, h, inputs.audio, inputs.text, inputs.masks[audio.level], inputs.audio_weights,
                       None if layer is None else layer.audio)
    if inputs.temporal and motion is not None:
        prefix = layer.motion if layer is not None and layer.motion is not None else inputs.motion_prefix(attn.path, h)
        h = inputs.run(motion, h, inputs.frames, prefix)
    return h


class _Factory:
    """Builds the sub-modules of one UNet from a :class:`NetConfig`."""

    def __init__(self, cfg: NetConfig, temporal: bool):
        self.cfg = cfg
        self.temporal = temporal

    def resnet(self, c_in, c_out):
        return ResnetBlock2D(in_channels=c_in, out_channels=c_out, temb_channels=self.cfg.time_embed_dim,
                             eps=self.cfg.norm_eps, groups=self.cfg.norm_num_groups, non_linearity="silu")

    def attention(self, c):
        cfg = self.cfg
        return SpatialTransformer(c, cfg.num_heads, cfg.cross_attention_dim, cfg.num_face_tokens, cfg.norm_num_groups)

    def audio(self, c, head_source, level):
        cfg = self.cfg
        dim = cfg.num_heads * (head_source // cfg.num_heads)  # head dim from the *input* channels (spec §2.7)
        return AudioModule(c, dim, cfg.num_heads, cfg.cross_attention_dim, cfg.audio_attention_dim,
                           cfg.audio_emo_head_dim, cfg.norm_num_groups, level)

    def motion(self, c):
        return MotionModule(c, self.cfg.num_heads, self.cfg.motion_max_len, self.cfg.norm_num_groups)


def _layers(block, count: int) -> Iterator[tuple]:
    """The transformer layers of a block: (spatial transformer, audio module, motion module), None where absent.
    Blocks without cross-attention have none (their motion modules never run, spec §2.4)."""
    if not hasattr(block, "attentions"):
        return
    audio = getattr(block, "audio_modules", None)
    motion = getattr(block, "motion_modules", None)
    for i in range(count):
        yield block.attentions[i], None if audio is None else audio[i], None if motion is None else motion[i]


#: the repeated blocks ``UNetBase.compile_blocks`` compiles, by name
COMPILE_REGIONS = {"resnets": ResnetBlock2D, "transformers": SpatialTransformer, "audio": AudioModule,
                   "motion": MotionModule}


class DownBlock(nn.Module):
    def __init__(self, f: _Factory, level: int, c_in: int, c_out: int, num_layers: int, cross_attention: bool,
                 add_downsample: bool):
        super().__init__()
        ins = [c_in] + [c_out] * (num_layers - 1)
        if cross_attention:
            self.attentions = nn.ModuleList([f.attention(c_out) for _ in ins])
        self.resnets = nn.ModuleList([f.resnet(c, c_out) for c in ins])
        if f.temporal:
            if cross_attention:
                self.audio_modules = nn.ModuleList([f.audio(c_out, c, level) for c in ins])
            self.motion_modules = nn.ModuleList([f.motion(c_out) for _ in ins])
        if add_downsample:
            self.downsamplers = nn.ModuleList([Downsample2D(c_out, use_conv=True, out_channels=c_out, padding=1,
                                                            name="op")])
        self.cross_attention = cross_attention

    def layers(self) -> Iterator[tuple]:
        """(spatial transformer, audio module or None, motion module or None) of every transformer layer."""
        yield from _layers(self, len(self.resnets))

    def forward(self, h, inputs: BlockInputs, downsample: bool = True):
        """``downsample=False`` stops before the downsampler (a DeepCache pass needs only the layers' skips)."""
        skips = []
        layers = list(self.layers())
        for i, resnet in enumerate(self.resnets):
            h = inputs.run(resnet, h, inputs.temb)
            if layers:
                h = _transformer_layer(inputs, h, *layers[i])
            skips.append(h)
        if downsample and hasattr(self, "downsamplers"):
            h = inputs.run(self.downsamplers[0], h)
            skips.append(h)
        return h, skips


class MidBlock(nn.Module):
    def __init__(self, f: _Factory, level: int, c: int):
        super().__init__()
        self.attentions = nn.ModuleList([f.attention(c)])
        self.resnets = nn.ModuleList([f.resnet(c, c), f.resnet(c, c)])
        if f.temporal:
            self.audio_modules = nn.ModuleList([f.audio(c, c, level)])
            self.motion_modules = nn.ModuleList([f.motion(c)])

    def layers(self) -> Iterator[tuple]:
        yield from _layers(self, 1)

    def forward(self, h, inputs: BlockInputs):
        h = inputs.run(self.resnets[0], h, inputs.temb)
        h = _transformer_layer(inputs, h, *next(self.layers()))
        return inputs.run(self.resnets[1], h, inputs.temb)


class UpBlock(nn.Module):
    def __init__(self, f: _Factory, level: int, c_in: int, c_prev: int, c_out: int, num_layers: int,
                 cross_attention: bool, add_upsample: bool):
        super().__init__()
        skip = [c_out] * (num_layers - 1) + [c_in]
        res_in = [c_prev] + [c_out] * (num_layers - 1)
        if cross_attention:
            self.attentions = nn.ModuleList([f.attention(c_out) for _ in range(num_layers)])
        self.resnets = nn.ModuleList([f.resnet(a + s, c_out) for a, s in zip(res_in, skip)])
        if f.temporal:
            if cross_attention:
                self.audio_modules = nn.ModuleList([f.audio(c_out, c_in, level) for _ in range(num_layers)])
            self.motion_modules = nn.ModuleList([f.motion(c_out) for _ in range(num_layers)])
        if add_upsample:
            self.upsamplers = nn.ModuleList([Upsample2D(c_out, use_conv=True, out_channels=c_out)])
        self.cross_attention = cross_attention

    def layers(self) -> Iterator[tuple]:
        yield from _layers(self, len(self.resnets))

    def forward(self, h, skips: list, inputs: BlockInputs):
        """Consumes (pops) its skip connections from the end of ``skips``."""
        layers = list(self.layers())
        for i, resnet in enumerate(self.resnets):
            h = torch.cat([h, skips.pop()], dim=1)
            h = inputs.run(resnet, h, inputs.temb)
            if layers:
                h = _transformer_layer(inputs, h, *layers[i])
        if hasattr(self, "upsamplers"):
            size = tuple(skips[-1].shape[-2:]) if skips else None
            h = inputs.run(self.upsamplers[0], h, size)
        return h


class UNetBase(nn.Module):
    """conv_in, timestep embedding and the down/up/mid blocks of an SD-1.5-style UNet (diffusers names).

    ``temporal=True`` adds the audio and motion modules of the denoising UNet.
    """

    def __init__(self, cfg: NetConfig, temporal: bool):
        super().__init__()
        self.config = cfg
        self.gradient_checkpointing = False
        f = _Factory(cfg, temporal)
        ch = cfg.block_out_channels
        n = len(ch)
        self.conv_in = nn.Conv2d(cfg.in_channels, ch[0], 3, padding=1)
        self.time_proj = Timesteps(ch[0], cfg.flip_sin_to_cos, cfg.freq_shift)
        self.time_embedding = TimestepEmbedding(ch[0], cfg.time_embed_dim)
        self.down_blocks = nn.ModuleList()
        self.up_blocks = nn.ModuleList()  # registered before mid_block, like diffusers (state-dict order)
        for i in range(n):
            self.down_blocks.append(DownBlock(f, i, ch[i - 1] if i else ch[0], ch[i], cfg.layers_per_block,
                                              cross_attention=i < n - 1, add_downsample=i < n - 1))
        self.mid_block = MidBlock(f, n - 1, ch[-1])
        rev = list(reversed(ch))
        for i in range(n):
            self.up_blocks.append(UpBlock(f, n - 1 - i, rev[min(i + 1, n - 1)], rev[i - 1] if i else rev[0], rev[i],
                                          cfg.layers_per_block + 1, cross_attention=i > 0, add_upsample=i < n - 1))
        for name, module in self.named_modules():
            if isinstance(module, SpatialTransformer):
                module.path = name
        use_small_map_gemm(self)  # 3x3 convs of the lowest levels' small CPU maps as one GEMM (same math)

    @property
    def dtype(self) -> torch.dtype:
        return self.conv_in.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.conv_in.weight.device

    def enable_gradient_checkpointing(self, enabled: bool = True):
        """Recompute each resnet/transformer/audio/motion module in the backward pass (same forward math)."""
        self.gradient_checkpointing = enabled
        return self

    def compile_blocks(self, mode: str = "default", backend: str = "inductor",
                       regions: Sequence[str] = tuple(COMPILE_REGIONS)) -> int:
        """Regional compilation: ``torch.compile`` every repeated block of the kinds ``regions`` (keys of
        :data:`COMPILE_REGIONS`) in place (``nn.Module.compile``). Blocks of one kind share their compiled code, so
        compile time grows with the distinct shapes (levels, rows), not with the number of blocks; the glue
        between the blocks stays eager. Returns the number of blocks compiled."""
        import torch._dynamo

        unknown = set(regions) - set(COMPILE_REGIONS)
        if unknown:
            raise ValueError(f"unknown compile regions {sorted(unknown)}; choose from {list(COMPILE_REGIONS)}")
        kinds = tuple(COMPILE_REGIONS[r] for r in regions)
        # one code object per block kind serves every level and row count: allow that many variants
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
        options = {"mode": mode} if backend == "inductor" else {}
        n = 0
        for module in self.modules():
            if isinstance(module, kinds):
                module.compile(backend=backend, **options)
                n += 1
        return n

    def transformer_paths(self) -> list[str]:
        return [name for name, m in self.named_modules() if isinstance(m, SpatialTransformer)]

    def embed_time(self, timestep, batch: int, dtype: torch.dtype, device) -> torch.Tensor:
        t = torch.as_tensor(timestep, device=device)
        if t.ndim == 0:
            t = t[None]
        t = t.expand(batch) if t.numel() == 1 else t
        if t.shape != (batch,):
            raise ValueError(f"timestep must be a scalar or have shape ({batch},); got {tuple(t.shape)}")
        return self.time_embedding(self.time_proj(t).to(dtype))

    def layers(self) -> Iterator[tuple]:
        """Every (spatial transformer, audio module, motion module) layer in execution order."""
        for block in self.down_blocks:
            yield from block.layers()
        yield from self.mid_block.layers()
        for block in self.up_blocks:
            yield from block.layers()

    def run_blocks(self, h: torch.Tensor, inputs: BlockInputs, deep: DeepFeatures | None = None) -> torch.Tensor:
        """The down, mid and up blocks on the ``conv_in`` output ``h``. ``deep``: DeepCache — without features,
        run everything and store them in ``deep``; with features, run only the ``deep.depth`` shallowest down and
        up blocks around them."""
        n = len(self.down_blocks)
        depth = n if deep is None else int(deep.depth)
        if not 1 <= depth <= n:
            raise ValueError(f"DeepCache depth must be 1..{n}, got {depth}")
        reuse = deep is not None and deep.features is not None
        skips = [h]
        for i, block in enumerate(self.down_blocks[: depth if reuse else n]):
            h, s = block(h, inputs, downsample=not (reuse and i == depth - 1))
            skips.extend(s)
        h = deep.features if reuse else self.mid_block(h, inputs)
        for j, block in enumerate(self.up_blocks):
            if j < n - depth:
                if reuse:
                    continue
            elif j == n - depth and deep is not None and not reuse:
                deep.features = h
            h = block(h, skips, inputs)
        return h
