"""scripts/benchmark.py runs every preset on the same random weights and inputs and reports a table and JSON."""
import json

import torch

from helpers import load_script
from emocast.cli import run_main


def test_benchmark_tiny_cpu(tmp_path, capsys):
    bench = load_script("benchmark")
    threads = torch.get_num_threads()
    try:
        code = run_main(bench.main, ["--net", "tiny", "--resolution", "64", "--frames", "3", "--steps", "5",
                                     "--device", "cpu", "--threads", "1", "--output", str(tmp_path / "b.json")])
    finally:
        torch.set_num_threads(threads)
    assert code == 0
    assert torch.is_grad_enabled()  # main() runs in-process: it must not switch autograd off for the caller
    report = json.loads((tmp_path / "b.json").read_text())
    assert report["device"] == "cpu" and report["dtype"] == "fp32" and report["relative_to"] == "release"
    assert report["frames"] == 3 and report["resolution"] == 64
    runs = {r["preset"]: r for r in report["runs"]}
    assert list(runs) == ["release", "fast", "faster"] and all(r["steps"] == 5 for r in runs.values())
    for r in runs.values():
        for key in ("s_per_step", "clip_prepare_s", "vae_encode_s", "vae_decode_s", "s_per_clip", "peak_host_rss_gb"):
            assert r[key] > 0, key
        expected = r["clip_prepare_s"] + r["denoise_s"] + r["vae_encode_s"] + r["vae_decode_s"]
        assert abs(r["s_per_clip"] - expected) < 0.01
        assert abs(r["device_s_per_video_s"] - r["s_per_clip"] / (3 / 25)) < 0.1
        assert abs(r["unet_tflop_per_clip"] * 1e12 - r["flops"]["total"]) <= 1e8  # rounded to 1e-4 TFLOP
    assert runs["release"]["flop_ratio"] == 1.0 and runs["release"]["psnr_vs_release_frames_db"] == float("inf")
    # same steps: fast/faster save by guiding fewer steps and reusing deep features
    assert runs["faster"]["flop_ratio"] < runs["fast"]["flop_ratio"] < 1.0
    assert runs["fast"]["solver"] == "dpmsolver++" and runs["fast"]["deep_cache_interval"] == 2
    out = capsys.readouterr().out
    assert "| release |" in out and "FLOP ratio" in out  # the table
    assert json.loads(out[out.index("{"):]) == report  # the same JSON on stdout


def test_benchmark_rejects_bad_sizes(capsys):
    bench = load_script("benchmark")
    assert run_main(bench.main, ["--resolution", "100", "--device", "cpu"]) != 0
    assert "multiple of 64" in capsys.readouterr().err
    assert run_main(bench.main, ["--presets", "release,fastest", "--device", "cpu"]) != 0
    assert "unknown preset 'fastest'" in capsys.readouterr().err


def test_benchmark_refuses_the_student_preset_with_one_message(capsys):
    """turbo samples a distilled student, not the benchmark's DDIM network: one message, before building anything."""
    bench = load_script("benchmark")
    assert run_main(bench.main, ["--net", "tiny", "--presets", "release,turbo", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "turbo samples a consistency-distilled student" in err and "Traceback" not in err
