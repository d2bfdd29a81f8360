"""scripts/benchmark.py runs the sampler's step on random weights and reports the timings as JSON."""
import json

import torch

from helpers import load_script
from emocast.cli import run_main


def test_benchmark_tiny_cpu(tmp_path, capsys):
    bench = load_script("benchmark")
    threads = torch.get_num_threads()
    try:
        code = run_main(bench.main, ["--preset", "tiny", "--resolution", "64", "--frames", "3", "--steps", "2",
                                     "--device", "cpu", "--threads", "1", "--output", str(tmp_path / "b.json")])
    finally:
        torch.set_num_threads(threads)
    assert code == 0
    assert torch.is_grad_enabled()  # main() runs in-process: it must not switch autograd off for the caller
    report = json.loads((tmp_path / "b.json").read_text())
    assert report["device"] == "cpu" and report["dtype"] == "fp32" and report["cfg"] is True
    assert report["frames"] == 3 and report["steps"] == 2 and report["resolution"] == 64
    for key in ("s_per_step", "reference_pass_s", "vae_encode_s", "vae_decode_s", "s_per_clip", "peak_host_rss_gb"):
        assert report[key] > 0, key
    expected = report["reference_pass_s"] + 2 * report["s_per_step"] + report["vae_encode_s"] + report["vae_decode_s"]
    assert abs(report["s_per_clip"] - expected) < 0.05
    assert abs(report["device_s_per_video_s"] - report["s_per_clip"] / (3 / 25)) < 0.5
    out = capsys.readouterr().out
    assert json.loads(out[out.index("{"):]) == report  # the same JSON on stdout


def test_benchmark_rejects_bad_sizes(capsys):
    bench = load_script("benchmark")
    assert run_main(bench.main, ["--resolution", "100", "--device", "cpu"]) != 0
    assert "multiple of 64" in capsys.readouterr().err
