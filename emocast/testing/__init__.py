"""Offline test helpers: tiny random models in the real on-disk formats (no downloads, no GPU).

- :func:`emocast.testing.tiny_kit.write_tiny_models` (``python -m emocast.testing.tiny_kit DIR``): a complete
  ``pretrained_models``-shaped folder; the pytest fixture ``tiny_models`` (tests/conftest.py) writes it once
  per session.
- :mod:`~emocast.testing.clip_tokenizer`: the real CLIP BPE ``vocab.json``/``merges.txt`` derived from
  open_clip's vocabulary file.
- :mod:`~emocast.testing.tiny_face_models`, :mod:`~emocast.testing.tiny_separator`,
  :mod:`~emocast.testing.tiny_eval_models`: the insightface pack, the MDX separator and the metric models.

Submodules are imported on demand (they pull in torch / diffusers / onnx).
"""
