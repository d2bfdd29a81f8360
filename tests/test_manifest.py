"""The full-size architecture equals the released checkpoint's key manifest exactly (built on the meta device)."""
from __future__ import annotations

from pathlib import Path

import pytest

from emocast.models import SD15, build_net

# a copy of ../shared/reference/official_net_state_dict.tsv (the released checkpoint's keys, shapes, dtypes)
MANIFEST = Path(__file__).resolve().parent / "fixtures" / "parity" / "official_net_state_dict.tsv"


def read_manifest(path: Path) -> dict[str, tuple[int, ...]]:
    rows = path.read_text().splitlines()
    assert rows[0].split("\t")[:2] == ["key", "shape"]
    out = {}
    for row in rows[1:]:
        key, shape, _dtype = row.split("\t")
        out[key] = tuple(int(s) for s in shape.split("x"))
    return out


@pytest.fixture(scope="module")
def full_net():
    return build_net(SD15, device="meta")


def test_full_size_state_dict_equals_manifest(full_net):
    manifest = read_manifest(MANIFEST)
    ours = {k: tuple(v.shape) for k, v in full_net.state_dict().items()}
    assert len(manifest) == 2832
    assert sorted(set(manifest) - set(ours)) == []
    assert sorted(set(ours) - set(manifest)) == []
    assert {k: s for k, s in ours.items() if manifest[k] != s} == {}
    assert all(p.is_meta for p in full_net.parameters())


def test_full_size_parameter_counts(full_net):
    """Spec §1.1 table."""
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(full_net.reference_unet) == 878_678_080
    assert count(full_net.denoising_unet) == 1_576_191_748
    assert count(full_net.face_locator) == 514_896
    assert count(full_net.imageproj) == 1_577_472
    assert count(full_net.audioproj) == 36_465_152
    assert count(full_net) == 2_493_427_348
    assert sum(b.numel() for b in full_net.buffers()) == 1_208_320


def test_child_order_and_block_paths(full_net):
    assert [n for n, _ in full_net.named_children()] == [
        "reference_unet", "denoising_unet", "face_locator", "imageproj", "audioproj"]
    paths = full_net.reference_unet.transformer_paths()
    assert paths == full_net.denoising_unet.transformer_paths()
    assert len(paths) == 16 and "mid_block.attentions.0" in paths


def test_config_is_inferred_from_release_shapes(full_net):
    from emocast.models.loading import infer_config

    assert infer_config(full_net.state_dict()) == SD15


def test_xformers_is_refused_without_cuda():
    from emocast.errors import ConfigError
    from emocast.models import TINY
    from emocast.models.attention_backend import use_xformers

    net = build_net(TINY)
    with pytest.raises(ConfigError, match="xformers"):
        use_xformers(net, True)
    use_xformers(net, False)  # back to SDPA is always possible
