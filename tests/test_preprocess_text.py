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


def test_loads_the_full_openai_clip_checkpoint_layout(tmp_path):
    """openai/clip-vit-large-patch14 ships a whole CLIPModel (text + vision, ``model_type: clip``): the text
    tower must load from it unchanged, with the vision weights ignored."""
    from transformers import CLIPConfig, CLIPModel

    from emocast.testing.tiny_kit import write_clip_tokenizer

    folder = registry.COMPONENTS["clip-vit-large-patch14"].path(tmp_path)
    text = dict(vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                max_position_embeddings=77, bos_token_id=49406, eos_token_id=49407, pad_token_id=1)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4, image_size=32,
                  patch_size=16)
    torch.manual_seed(0)
    full = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)).eval()
    full.save_pretrained(folder, safe_serialization=True)
    write_clip_tokenizer(folder)
    enc = TextEncoder(tmp_path, device="cpu")
    tokens = enc.tokenize("The portrait is watching a horror movie.")
    with torch.inference_mode():
        expected = full.text_model(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])
    torch.testing.assert_close(enc.encode("The portrait is watching a horror movie."), expected.last_hidden_state)
