"""Helpers shared by the test modules (``from helpers import load_script``; tests/ is on sys.path under pytest)."""
from __future__ import annotations

import importlib.util
import socket
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def load_script(name: str):
    """``scripts/<name>.py`` as a module, so a test runs its real entry point in-process:
    ``run_main(load_script("inference").main, argv)``."""
    spec = importlib.util.spec_from_file_location(f"script_{name}", REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_face_landmarker_task(models_root, compression=zipfile.ZIP_STORED) -> Path:
    """A hand-made FaceLandmarker ``.task`` (mediapipe's bundled detector + landmark models) in the registry folder
    of ``models_root``; mediapipe is not imported (so a subprocess can be the first to import it)."""
    from emocast import registry

    mods = Path(importlib.util.find_spec("mediapipe").submodule_search_locations[0]) / "modules"
    folder = registry.COMPONENTS["face_landmarker"].path(models_root)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "face_landmarker_v2_with_blendshapes.task"
    with zipfile.ZipFile(path, "w", compression) as z:
        z.write(mods / "face_detection" / "face_detection_short_range.tflite", "face_detector.tflite")
        z.write(mods / "face_landmark" / "face_landmark.tflite", "face_landmarks_detector.tflite")
    return path


def write_aac(path, wave, rate: int, container_format: str = "ipod") -> Path:
    """``wave`` (samples,) float in [-1, 1] as one AAC stream in an audio-only file (``ipod`` = .m4a, ``mp4``)."""
    import av
    import numpy as np

    with av.open(str(path), "w", format=container_format) as c:
        stream = c.add_stream("aac", rate=rate)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(np.asarray(wave)[None], np.float32), format="fltp",
                                           layout="mono")
        frame.sample_rate, frame.pts = rate, 0
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            c.mux(packet)
    return Path(path)


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on (for servers and process groups the tests start)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
