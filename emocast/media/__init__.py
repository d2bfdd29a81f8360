"""Media files: the one place that decodes and writes video and audio (PyAV / FFmpeg) and that wraps mediapipe.

- ``audio``            decode_audio / AudioStream (the one audio decoder), resample, to_mono, write_wav
- ``video``            probe, timed_frames, read_frames (by index, seeking), count_frames (the one video decoder)
- ``container``        open_container / decode_errors: opening files with PyAV
- ``video_writer``     VideoWriter: H.264 (deterministic) + AAC from a file or from memory, streamed, atomic
- ``mediapipe_faces``  import_mediapipe (+ the protobuf shim), FaceMeshes (image / video mode), FaceDetection

Modules are not imported here so that importing one does not load the heavy dependencies of the others.
"""
