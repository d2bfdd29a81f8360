"""The scoring models both data preparation and evaluation run (SyncNet, Emotion-FAN), their inputs and loaders.

- ``syncnet``      SyncNet (syncnet_python's ``syncnet_v2.model`` layout), load_syncnet
- ``mfcc``         the MFCCs SyncNet was trained on (python_speech_features defaults)
- ``lse``          evaluate_sync: the audio-visual offset search -> offset, LSE-D, LSE-C
- ``emotion_fan``  EmotionFAN (EAT's MEAD-finetuned frame attention network), FrameAttentionNet
- ``face_crops``   the crops each metric's reference pipeline feeds (syncnet_crops, fan_crops, crops_for),
                   FaceDetector (mediapipe BlazeFace via emocast.media)
- ``checkpoints``  read_weights / load_strict: weights-only, key-by-key checked loading

``emocast.data`` (sync scores, emotion labels of unlabelled videos) and ``emocast.evaluation`` (LSE, Acc_emo) both
import from here; neither imports the other. Modules are not imported here (they pull in torch / scipy / cv2).
"""
