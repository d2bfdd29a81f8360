"""Emotion labels, shared by data preparation, evaluation and test-set building.

- ``emotions``  EMOTIONS (MEAD's eight), INTENSITIES, normalize_emotion / normalize_intensity (any spelling)
- ``mead``      parse_mead: identity, view, emotion, intensity and clip from MEAD's file naming; mead_audio_for
- ``prompts``   emotive text descriptions of a label: the offline template bank (sample_prompts), LLMPrompter

Only the label vocabulary lives here; ``emocast.data.emotion`` keeps data preparation's classifier interface and
``emocast.evaluation.acc_emo`` the metric's target labels.
"""
