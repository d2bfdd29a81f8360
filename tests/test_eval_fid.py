"""FID: Fréchet distance against the closed form, frame sampling, and the pytorch-fid Inception layout."""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch

from emocast.errors import CheckpointError, ConfigError, InputError
from emocast.evaluation.fid import fid_from_features, frechet_distance, inception_features, sample_indices
from emocast.evaluation.inception import FIDInception, load_inception_file


def test_frechet_distance_closed_form_commuting_covariances():
    # diagonal covariances: FID = |mu1-mu2|^2 + sum (sqrt(a) - sqrt(b))^2
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 1.0])
    expected = 5.0 + (1 - 2) ** 2 + (2 - 1) ** 2 + (3 - 1) ** 2
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(mu1, np.diag(a), mu1, np.diag(a)) == pytest.approx(0.0, abs=1e-9)


def test_fid_of_samples_from_known_gaussians():
    rng = np.random.default_rng(0)
    d, n = 4, 200_000
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    s1 = q @ np.diag([1.0, 2.0, 0.5, 3.0]) @ q.T
    s2 = np.diag([2.0, 1.0, 1.0, 0.25])
    mu1, mu2 = np.zeros(d), np.array([1.0, -1.0, 0.5, 0.0])
    # closed form for non-commuting covariances: Tr(sqrtm(S1 S2)) = Tr(sqrtm(S2^1/2 S1 S2^1/2))
    r = np.sqrt(s2)
    w = np.linalg.eigvalsh(r @ s1 @ r)
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.sum(np.sqrt(w))
    x1 = rng.multivariate_normal(mu1, s1, n)
    x2 = rng.multivariate_normal(mu2, s2, n)
    assert fid_from_features(x1, x2) == pytest.approx(expected, abs=0.05)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-8)


def test_fid_needs_two_frames():
    with pytest.raises(InputError, match="at least 2"):
        fid_from_features(np.zeros((1, 3)), np.zeros((5, 3)))


def test_frame_sampling_modes():
    assert sample_indices(100, "per_video", 5) == [0, 20, 40, 60, 80]  # EAT: linspace(0, T, k, endpoint=False)
    assert sample_indices(3, "per_video", 5) == [0, 1, 2]
    assert sample_indices(60, "every_k", every_k=25) == [0, 25, 50]
    assert sample_indices(4, "all") == [0, 1, 2, 3]
    with pytest.raises(ConfigError):
        sample_indices(10, "random")


def _bc(out, name, cin, cout, kh, kw=None):
    kw = kh if kw is None else kw
    out[f"{name}.conv.weight"] = (cout, cin, kh, kw)
    for s in ("weight", "bias", "running_mean", "running_var"):
        out[f"{name}.bn.{s}"] = (cout,)


def expected_inception_shapes() -> dict[str, tuple]:
    """pytorch-fid's FID Inception (torchvision Inception3, 1008 classes, no aux head), from its block list."""
    o = {}
    _bc(o, "Conv2d_1a_3x3", 3, 32, 3)
    _bc(o, "Conv2d_2a_3x3", 32, 32, 3)
    _bc(o, "Conv2d_2b_3x3", 32, 64, 3)
    _bc(o, "Conv2d_3b_1x1", 64, 80, 1)
    _bc(o, "Conv2d_4a_3x3", 80, 192, 3)
    for name, cin, pool in (("Mixed_5b", 192, 32), ("Mixed_5c", 256, 64), ("Mixed_5d", 288, 64)):
        _bc(o, f"{name}.branch1x1", cin, 64, 1)
        _bc(o, f"{name}.branch5x5_1", cin, 48, 1)
        _bc(o, f"{name}.branch5x5_2", 48, 64, 5)
        _bc(o, f"{name}.branch3x3dbl_1", cin, 64, 1)
        _bc(o, f"{name}.branch3x3dbl_2", 64, 96, 3)
        _bc(o, f"{name}.branch3x3dbl_3", 96, 96, 3)
        _bc(o, f"{name}.branch_pool", cin, pool, 1)
    _bc(o, "Mixed_6a.branch3x3", 288, 384, 3)
    _bc(o, "Mixed_6a.branch3x3dbl_1", 288, 64, 1)
    _bc(o, "Mixed_6a.branch3x3dbl_2", 64, 96, 3)
    _bc(o, "Mixed_6a.branch3x3dbl_3", 96, 96, 3)
    for name, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
        _bc(o, f"{name}.branch1x1", 768, 192, 1)
        _bc(o, f"{name}.branch7x7_1", 768, c7, 1)
        _bc(o, f"{name}.branch7x7_2", c7, c7, 1, 7)
        _bc(o, f"{name}.branch7x7_3", c7, 192, 7, 1)
        _bc(o, f"{name}.branch7x7dbl_1", 768, c7, 1)
        _bc(o, f"{name}.branch7x7dbl_2", c7, c7, 7, 1)
        _bc(o, f"{name}.branch7x7dbl_3", c7, c7, 1, 7)
        _bc(o, f"{name}.branch7x7dbl_4", c7, c7, 7, 1)
        _bc(o, f"{name}.branch7x7dbl_5", c7, 192, 1, 7)
        _bc(o, f"{name}.branch_pool", 768, 192, 1)
    _bc(o, "Mixed_7a.branch3x3_1", 768, 192, 1)
    _bc(o, "Mixed_7a.branch3x3_2", 192, 320, 3)
    _bc(o, "Mixed_7a.branch7x7x3_1", 768, 192, 1)
    _bc(o, "Mixed_7a.branch7x7x3_2", 192, 192, 1, 7)
    _bc(o, "Mixed_7a.branch7x7x3_3", 192, 192, 7, 1)
    _bc(o, "Mixed_7a.branch7x7x3_4", 192, 192, 3)
    for name, cin in (("Mixed_7b", 1280), ("Mixed_7c", 2048)):
        _bc(o, f"{name}.branch1x1", cin, 320, 1)
        _bc(o, f"{name}.branch3x3_1", cin, 384, 1)
        _bc(o, f"{name}.branch3x3_2a", 384, 384, 1, 3)
        _bc(o, f"{name}.branch3x3_2b", 384, 384, 3, 1)
        _bc(o, f"{name}.branch3x3dbl_1", cin, 448, 1)
        _bc(o, f"{name}.branch3x3dbl_2", 448, 384, 3)
        _bc(o, f"{name}.branch3x3dbl_3a", 384, 384, 1, 3)
        _bc(o, f"{name}.branch3x3dbl_3b", 384, 384, 3, 1)
        _bc(o, f"{name}.branch_pool", cin, 192, 1)
    o["fc.weight"], o["fc.bias"] = (1008, 2048), (1008,)
    return o


@pytest.fixture(scope="module")
def inception():
    torch.manual_seed(0)
    return FIDInception().eval()


def test_inception_keys_match_pytorch_fid(inception):
    sd = {k: tuple(v.shape) for k, v in inception.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert sd == expected_inception_shapes()
    # torchvision's inception_v3 has 27,161,264 parameters; minus the aux head (3,326,696), plus 8 more classes
    assert sum(p.numel() for p in inception.parameters()) == 27_161_264 - 3_326_696 + 8 * 2049


def test_inception_loads_pytorch_fid_state_dict(tmp_path, inception):
    state = OrderedDict((k, v) for k, v in inception.state_dict().items() if not k.endswith("num_batches_tracked"))
    path = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    torch.save(state, path)
    loaded = load_inception_file(path)
    assert torch.equal(loaded.Mixed_7c.branch_pool.conv.weight, inception.Mixed_7c.branch_pool.conv.weight)
    state.pop("Mixed_6e.branch7x7dbl_5.bn.running_var")
    torch.save(state, tmp_path / "partial.pth")
    with pytest.raises(CheckpointError, match="missing key"):
        load_inception_file(tmp_path / "partial.pth")


def test_inception_features_shape_and_resize(inception):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (3, 64, 80, 3), dtype=np.uint8)
    f = inception_features(inception, frames, batch_size=2)
    assert f.shape == (3, 2048) and np.isfinite(f).all()
    # features() resizes to 299 bilinearly: an explicitly resized input gives the same features
    x = torch.from_numpy(frames[:1]).permute(0, 3, 1, 2).float() / 255
    x299 = torch.nn.functional.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
    np.testing.assert_allclose(inception.features(x299).numpy(), f[:1], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("n1, n2", [(10, 12), (80, 90)])  # rank-deficient (N < D) and full-rank covariances
def test_gram_route_equals_sqrtm(n1, n2):
    rng = np.random.default_rng(n1)
    d = 32
    x1 = rng.standard_normal((n1, d)) @ rng.standard_normal((d, d))
    x2 = rng.standard_normal((n2, d)) + 0.5
    ref = frechet_distance(x1.mean(0), np.cov(x1, rowvar=False), x2.mean(0), np.cov(x2, rowvar=False))
    assert fid_from_features(x1, x2, "gram") == pytest.approx(ref, rel=1e-6)
    assert fid_from_features(x1, x2, "sqrtm") == pytest.approx(ref, rel=1e-9)
    assert fid_from_features(x1, x2, "auto") == pytest.approx(ref, rel=1e-6)
    with pytest.raises(ConfigError):
        fid_from_features(x1, x2, "exact")


def test_inception_pool_branches_are_the_fid_variants(inception):
    """pytorch-fid's FIDInceptionA/C/E_1 average-pool without counting the zero padding (TF), E_2 max-pools."""
    seen = {}
    names = ("Mixed_5b", "Mixed_6b", "Mixed_7b", "Mixed_7c")
    hooks = [getattr(inception, n).branch_pool.register_forward_hook(
        lambda m, inp, out, n=n: seen.__setitem__(n, inp[0])) for n in names]
    try:
        with torch.no_grad():
            for name, c in zip(names, (192, 768, 1280, 2048)):
                const = torch.full((1, c, 5, 5), 2.0)
                getattr(inception, name)(const)
                torch.testing.assert_close(seen[name], const)  # padding not averaged in (would shrink the border)
            peak = torch.zeros(1, 2048, 5, 5)
            peak[..., 2, 2] = 9.0
            inception.Mixed_7c(peak)
            expect = torch.zeros(5, 5)
            expect[1:4, 1:4] = 9.0  # 3x3 max pool, stride 1
            torch.testing.assert_close(seen["Mixed_7c"][0, 0], expect)
    finally:
        for h in hooks:
            h.remove()
