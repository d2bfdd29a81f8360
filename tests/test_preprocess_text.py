"""CLIP text encoding (spec §3): 77 tokens, attention mask passed, empty uncond prompt, truncation warning."""
import pytest
import torch

from emocast import registry
from emocast.errors import MissingModelError
from emocast.preprocess.text import MAX_LENGTH, TextEncoder


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    from emocast.testing.tiny_kit import write_clip

    root = tmp_path_factory.mktemp("models")
    write_clip(registry.COMPONENTS["clip-vit-large-patch14"].path(root), hidden_size=32)
    return TextEncoder(root, device="cpu")


def test_shapes_and_tokens(encoder):
    tokens = encoder.tokenize("a photo of a cat")
    assert tokens["input_ids"].shape == (1, MAX_LENGTH)
    assert tokens["input_ids"][0, :7].tolist() == [49406, 320, 1125, 539, 320, 2368, 49407]  # OpenAI CLIP ids
    assert tokens["input_ids"][0, 7:].eq(49407).all()  # padded with <|endoftext|>
    assert tokens["attention_mask"][0].sum() == 7
    emb = encoder.encode(["a happy woman", "an angry man shouting"])
    assert emb.shape == (2, MAX_LENGTH, 32) and emb.dtype == torch.float32


def test_attention_mask_is_passed_to_the_encoder(encoder):
    tokens = encoder.tokenize("a sad face")
    n = int(tokens["attention_mask"].sum())
    ours = encoder.encode("a sad face")[0]
    with torch.inference_mode():
        no_mask = encoder.model(input_ids=tokens["input_ids"]).last_hidden_state[0]
    # causal attention: real tokens are the same, padding positions differ (the release's behaviour)
    torch.testing.assert_close(ours[:n], no_mask[:n])
    assert (ours[n:] - no_mask[n:]).abs().max() > 1e-3


def test_uncond_is_the_empty_prompt(encoder):
    u = encoder.uncond(2)
    assert u.shape == (2, MAX_LENGTH, 32)
    torch.testing.assert_close(u[0], encoder.encode("")[0])
    assert encoder.tokenize("")["attention_mask"][0].sum() == 2  # BOS + EOS


def test_long_prompt_is_truncated_with_warning(encoder):
    long = "very " * 90 + "angry"
    with pytest.warns(UserWarning, match="cut to"):
        tokens = encoder.tokenize(long)
    assert tokens["input_ids"].shape == (1, MAX_LENGTH) and tokens["input_ids"][0, -1] == 49407
    assert tokens["attention_mask"].sum() == MAX_LENGTH
    with pytest.warns(UserWarning):
        assert encoder.encode(long).shape == (1, MAX_LENGTH, 32)


def test_missing_clip_gives_download_report(tmp_path):
    with pytest.raises(MissingModelError, match="clip-vit-large-patch14"):
        TextEncoder(tmp_path, device="cpu")
