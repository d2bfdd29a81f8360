"""Media files: the one place that decodes and writes video and audio (PyAV / FFmpeg).

- ``video_writer``  VideoWriter: H.264 (deterministic) + AAC from a file or from memory, streamed, atomic

Modules are not imported here so that importing one does not load the heavy dependencies of the others.
"""
