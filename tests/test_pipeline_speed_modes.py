"""The speed switches that change how, not what, the network computes: ``--compile`` (regional torch.compile of the
denoising UNet's repeated blocks) gives the eager output on the CPU; ``--offload model`` keeps exactly one model on
the execution device while it computes; the small-map 3x3 convolution GEMM is ``nn.Conv2d``'s math.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
import soundfile as sf

from emocast.models import TINY
from emocast.models.golden import golden_net, random_step_inputs
from emocast.models.small_conv import MAX_ROWS, SmallMapConv2d, conv3x3_gemm, small_map_gemm_applies
from emocast.pipelines import conditioning

pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------------------------------ small-map conv
@pytest.mark.parametrize("shape", [(8, 32, 2, 2), (2, 16, 4, 4), (1, 8, 3, 5), (4, 16, 8, 8)])
@pytest.mark.parametrize("bias", [True, False])
def test_small_map_gemm_is_conv2d(shape, bias):
    g = torch.Generator().manual_seed(0)
    n, c, h, w = shape
    x = torch.randn(*shape, generator=g)
    conv = torch.nn.Conv2d(c, 24, 3, padding=1, bias=bias)
    expected = conv(x)
    conv.__class__ = SmallMapConv2d
    assert small_map_gemm_applies(conv, x) == (n * h * w <= MAX_ROWS)
    torch.testing.assert_close(conv(x), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(conv3x3_gemm(x.double(), conv.weight.double(), None if conv.bias is None else
                                            conv.bias.double()),
                               F.conv2d(x.double(), conv.weight.double(), conv.bias.double() if bias else None,
                                        padding=1), rtol=1e-12, atol=1e-12)


def test_small_map_gemm_only_where_it_applies():
    x = torch.zeros(1, 4, 2, 2)
    assert not small_map_gemm_applies(torch.nn.Conv2d(4, 4, 3, padding=1, stride=2), x)
    assert not small_map_gemm_applies(torch.nn.Conv2d(4, 4, 1), x)
    assert not small_map_gemm_applies(torch.nn.Conv2d(4, 4, 3, padding=1), x.double())  # measured in fp32 only
    net = golden_net(TINY)
    for unet in (net.denoising_unet, net.reference_unet):  # every 3x3 conv of the blocks (the small maps' levels)
        blocks = [*unet.down_blocks, unet.mid_block, *unet.up_blocks]
        convs = [m for b in blocks for m in b.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
        assert convs and all(type(m) is SmallMapConv2d for m in convs)
        assert all(set(m.state_dict()) == {"weight", "bias"} for m in convs)  # same parameters, same names


# ------------------------------------------------------------------------------------------------ --compile
def _step(net, x):
    video = conditioning.prepare_video(
        net, text_emb=x["text_emb"], uncond_text_emb=x["uncond_text_emb"], face_emb=x["face_emb"],
        face_region=x["face_region"], full_masks=x["full_masks"], face_masks=x["face_masks"],
        lip_masks=x["lip_masks"], guidance=True)
    clip = conditioning.prepare_clip(net, video, ref_latents=x["ref_latents"], audio_windows=x["audio_windows"])
    return conditioning.guide(conditioning.model_output(net, video, clip, x["latents"], 400, (0.7, 1.3, 1.6)), 3.5)


def test_compile_gives_the_eager_output_on_cpu():
    """``--compile`` (``compile_blocks``, inductor) on the tiny golden network, a CFG step with reference, audio
    and motion frames: the eager prediction within float noise. Float64, where rounding is ~1e-16 and the tiny
    network's ~1e4 amplification of it stays far below the tolerance (fp32 differs by ~1e-3 from reordered sums)."""
    import torch._dynamo

    net = golden_net(TINY).double().eval().requires_grad_(False)
    x = {k: (v.double() if torch.is_tensor(v) else [m.double() for m in v])
         for k, v in random_step_inputs(TINY, frames=2, latent_size=8, seed=3).items()}
    torch._dynamo.reset()
    try:
        with torch.inference_mode():
            eager = _step(net, x)
            compiled_blocks = net.denoising_unet.compile_blocks()
            compiled = _step(net, x)
        assert compiled_blocks > 0
        assert all(m._compiled_call_impl is not None for m in net.denoising_unet.modules()
                   if type(m).__name__ in ("ResnetBlock2D", "SpatialTransformer", "AudioModule", "MotionModule"))
        assert float((compiled - eager).norm() / eager.norm()) < 1e-8
    finally:
        torch._dynamo.reset()


def test_compile_flag_compiles_the_pipeline_blocks(tiny_models):
    from emocast.pipelines.inference import EmoCASTPipeline

    pipe = EmoCASTPipeline.from_pretrained(tiny_models, device="cpu", compile=True, progress=False,
                                           **{"preprocess.separate_vocals": False})
    try:
        unet = pipe.net.denoising_unet
        assert any(m._compiled_call_impl is not None for m in unet.modules())
        assert all(m._compiled_call_impl is None for m in pipe.net.reference_unet.modules())  # runs once a clip
    finally:
        pipe.close()


# ------------------------------------------------------------------------------------------------ --offload model
def test_offload_model_keeps_one_model_resident_while_it_computes(tiny_models, tmp_path, monkeypatch):
    """The real accelerate hooks with the device placement mocked (the CPU stands in for the GPU): every model's
    ``.to`` is recorded instead of moving anything, and at the start of every sub-model's computation exactly the
    model that owns it is placed on the execution device, all others on the CPU."""
    import accelerate.hooks

    from emocast import config
    from emocast.pipelines.config import InferenceConfig
    from emocast.pipelines.inference import EmoCASTPipeline
    from emocast.pipelines.sampler import ClipSampler
    from emocast.testing.synthetic import face_image, speech

    cfg = config.load(InferenceConfig, (), ["data.n_sample_frames=4", "preprocess.separate_vocals=false"])
    pipe = EmoCASTPipeline.from_pretrained(tiny_models, config=cfg, device="cpu", inference_steps=2, seed=7,
                                           progress=False)
    gpu = torch.device("cuda")
    placement, seen = {}, []
    models = {"net": pipe.net, "vae": pipe.codec.vae, "text_encoder": pipe.text_encoder.model,
              "audio_encoder": pipe.audio_encoder.model}

    def recorder(name, model):
        def to(*args, **kwargs):
            target = next((a for a in list(args) + list(kwargs.values()) if isinstance(a, (str, torch.device))), None)
            if target is not None:
                placement[name] = torch.device(target).type
            return model
        return to

    monkeypatch.setattr(accelerate.hooks, "send_to_device", lambda x, *a, **k: x)
    monkeypatch.setattr(ClipSampler, "device", property(lambda self: torch.device("cpu")))

    def watch(owner):
        def hook(module, args):
            seen.append((owner, dict(placement)))
        return hook

    handles = [child.register_forward_pre_hook(watch(name)) for name, model in models.items()
               for child in model.children()]
    try:
        pipe.enable_model_offload(gpu)
        assert all(next(m.parameters()).device.type == "cpu" for m in models.values())  # every model waits there
        for name, model in models.items():  # (adding the hooks resets a module's own ``to``: record from here on)
            placement[name] = "cpu"
            model.to = recorder(name, model)  # an instance attribute that accelerate's hooks call; nothing moves
        Image.fromarray(face_image("astronaut")[0]).save(tmp_path / "p.png")
        sf.write(tmp_path / "s.wav", speech("Hello there.", 0.3, sr=16000), 16000)
        pipe.render(tmp_path / "p.png", tmp_path / "s.wav", "happy", tmp_path / "o.mp4", progress=False)
    finally:
        for h in handles:
            h.remove()
        for model in models.values():
            model.__dict__.pop("to", None)
        pipe.close()
    owners = [owner for owner, _ in seen]
    assert set(owners) == set(models), owners  # every model computed
    for owner, where in seen:
        assert where[owner] == "cuda", (owner, where)
        assert all(v == "cpu" for k, v in where.items() if k != owner), (owner, where)
    # the order of a render: wav2vec2, CLIP, then the networks and the VAE alternating per clip
    first = list(dict.fromkeys(owners))
    assert first[:2] == ["audio_encoder", "text_encoder"] and set(first[2:]) == {"net", "vae"}
    assert owners[-1] == "vae"  # the last clip's decode
