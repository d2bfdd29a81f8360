"""Inference preprocessing (docs/preprocessing.md), one concept per module; import the module you need:

- ``image``      load_image (formats, EXIF, alpha), square_crop_around, resize_square, to_model_pixels
- ``face``       FaceAnalyzer (insightface): largest face box + raw 512-d embedding
- ``landmarks``  Landmarker (emocast.media's mediapipe wrapper, image mode): (478, 2) pixel landmarks
- ``masks``      face/lip boxes, soft full/face/lip masks, per-level masks, FaceLocator region, union variant
- ``reference``  prepare_reference: the whole portrait step for inference
- ``audio``      load_audio / load_speech, Wav2VecFeatures (chunked), audio_windows, pad_to_clip
- ``separator``  VocalSeparator (audio-separator Kim_Vocal_2, offline)
- ``text``       TextEncoder (CLIP ViT-L/14, attention mask passed)

Modules are not imported here so that importing one does not load the heavy dependencies of the others.
"""
