"""A tiny MDX-Net stand-in for ``Kim_Vocal_2.onnx`` so audio-separator's real ``load_model``/``separate`` run
offline in tests.

:func:`write_tiny_separator` writes into ``directory`` (the registry's ``<root>/audio_separator``):

- ``Kim_Vocal_2.onnx``: an ``Identity`` graph with input ``input`` ``[N, 4, dim_f, dim_t]`` (the MDX spectrogram
  layout: real/imag x stereo, frequency bins, frames) and output ``output`` of the same shape. The "vocals"
  are therefore the (band-limited, STFT round-tripped) mix itself.
- ``download_checks.json``: audio-separator's model list with this file under ``mdx_download_list``, so model
  lookup never goes to the network.
- ``mdx_model_data.json``: ``{md5: {compensate, mdx_dim_f_set, mdx_dim_t_set, mdx_n_fft_scale_set,
  primary_stem: "Vocals"}}`` keyed by audio-separator's model hash (MD5 of the last 10,240,000 bytes, here
  the whole file), and ``vr_model_data.json`` ``{}``.

The defaults (dim_f 1024, dim_t 2**8 = 256 frames = audio-separator's default MDX ``segment_size``, n_fft 2048,
hop 1024) keep the ONNX Runtime path (no onnx2torch conversion) and are small enough for CPU tests.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

MODEL_NAME = "Kim_Vocal_2.onnx"
HASH_BYTES = 10000 * 1024  # audio-separator hashes the last 10,240,000 bytes (the whole file when smaller)

_DOWNLOAD_LISTS = ("demucs_download_list", "vr_download_list", "mdx_download_list", "mdx_download_vip_list",
                   "mdx23c_download_list", "mdx23c_download_vip_list", "roformer_download_list")


def separator_model_hash(path) -> str:
    """The MD5 key audio-separator uses to look a model up in ``mdx_model_data.json``."""
    data = Path(path).read_bytes()
    return hashlib.md5(data[-HASH_BYTES:] if len(data) >= HASH_BYTES else data).hexdigest()


def write_metadata(directory, model_name: str = MODEL_NAME, *, dim_f: int, dim_t_log2: int, n_fft: int,
                   compensate: float = 1.0) -> list[Path]:
    """Write the three audio-separator JSON files for the MDX model ``directory/model_name``."""
    d = Path(directory)
    checks = {k: {} for k in _DOWNLOAD_LISTS}
    checks["mdx_download_list"] = {"MDX-Net Model: Kim Vocal 2": model_name}
    mdx = {separator_model_hash(d / model_name): {
        "compensate": compensate, "mdx_dim_f_set": dim_f, "mdx_dim_t_set": dim_t_log2,
        "mdx_n_fft_scale_set": n_fft, "primary_stem": "Vocals"}}
    out = []
    for name, obj in (("download_checks.json", checks), ("mdx_model_data.json", mdx), ("vr_model_data.json", {})):
        p = d / name
        p.write_text(json.dumps(obj, indent=1) + "\n")
        out.append(p)
    return out


def write_tiny_separator(directory, dim_f: int = 1024, dim_t_log2: int = 8, n_fft: int = 2048) -> list[Path]:
    """Write the tiny ``Kim_Vocal_2.onnx`` and its metadata into ``directory``; returns the four paths."""
    import onnx
    from onnx import TensorProto, helper

    if dim_f > n_fft // 2 + 1:
        raise ValueError(f"dim_f {dim_f} exceeds the {n_fft // 2 + 1} bins of n_fft {n_fft}")
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    dim_t = 2 ** dim_t_log2
    graph = helper.make_graph(
        [helper.make_node("Identity", ["input"], ["output"], name="identity")], "tiny_mdx",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 4, dim_f, dim_t])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 4, dim_f, dim_t])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="emocast-tiny")
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = d / MODEL_NAME
    onnx.save(model, str(path))
    return [path, *write_metadata(d, MODEL_NAME, dim_f=dim_f, dim_t_log2=dim_t_log2, n_fft=n_fft)]
