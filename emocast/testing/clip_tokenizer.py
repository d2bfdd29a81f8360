"""The real CLIP BPE tokenizer files (``vocab.json``, ``merges.txt``), derived offline.

OpenAI's CLIP tokenizer is defined by ``bpe_simple_vocab_16e6.txt.gz`` (MIT licence), which ``open_clip_torch``
ships. The Hugging Face files of ``openai/clip-vit-large-patch14`` are a re-encoding of it:

* merges: lines 1 .. 48,894 of the file (line 0 is a version header);
* vocab: the 256 byte symbols in GPT-2 ``bytes_to_unicode`` order, the same 256 with ``</w>``, one token per
  merge (the pair joined), then ``<|startoftext|>`` (49406) and ``<|endoftext|>`` (49407): 49,408 entries.

The package is located without importing it (``open_clip/__init__`` needs torchvision, which we never install).
"""
from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path

from ..errors import EmoCASTError

BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"
NUM_MERGES = 49152 - 256 - 2  # 48,894
VOCAB_SIZE = 49408
BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable unicode character table, in its canonical order."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return {b: table[b] for b in printable + [b for b in range(256) if b not in printable]}


def find_bpe_file() -> Path:
    """Path of open_clip's BPE vocabulary file; :class:`EmoCASTError` with the install command when absent."""
    spec = importlib.util.find_spec("open_clip")
    if spec is not None and spec.submodule_search_locations:
        for d in spec.submodule_search_locations:
            p = Path(d) / BPE_FILE
            if p.is_file():
                return p
    raise EmoCASTError(
        f"the CLIP BPE vocabulary ({BPE_FILE}) was not found: it ships with open_clip_torch, which is not installed "
        "in this environment. Fix: bash scripts/install.sh (installs it with --no-deps), or "
        "`python -m pip install --no-deps open_clip_torch==3.3.0`.")


def derive(bpe_file: Path | None = None) -> tuple[dict[str, int], list[str]]:
    """(vocab token -> id, merges) exactly as in the ``openai/clip-vit-large-patch14`` tokenizer."""
    lines = gzip.open(bpe_file or find_bpe_file()).read().decode("utf-8").split("\n")
    merges = lines[1:NUM_MERGES + 1]
    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges] + [BOS, EOS]
    assert len(tokens) == VOCAB_SIZE, len(tokens)
    return {t: i for i, t in enumerate(tokens)}, merges


def write_clip_tokenizer(folder, bpe_file: Path | None = None) -> list[Path]:
    """Write ``vocab.json``, ``merges.txt``, ``tokenizer_config.json`` and ``special_tokens_map.json``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab, merges = derive(bpe_file)
    files = {
        "vocab.json": json.dumps(vocab, ensure_ascii=False),
        "merges.txt": "#version: 0.2\n" + "\n".join(merges) + "\n",
        "tokenizer_config.json": json.dumps({
            "tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "do_lower_case": True,
            "bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS,
            "errors": "replace", "add_prefix_space": False}, indent=2),
        "special_tokens_map.json": json.dumps({"bos_token": BOS, "eos_token": EOS, "unk_token": EOS,
                                               "pad_token": EOS}, indent=2),
    }
    out = []
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
        out.append(folder / name)
    return out
