"""The one mediapipe wrapper: the protobuf shim is applied where mediapipe is imported (not by ``import emocast``),
start-up noise is filtered, image and video mode share one loader."""
import os
import subprocess
import sys

import numpy as np
import pytest

from helpers import REPO, write_face_landmarker_task
from emocast.media.mediapipe_faces import FaceMeshes, mediapipe_quiet

# in a fresh interpreter: import emocast and the modules that use mediapipe, look at protobuf, then load a .task
# through the wrapper (the Tasks API fails without the shim on protobuf >= 5)
SHIM_CHECK = """
import sys, warnings
import emocast, emocast.media.mediapipe_faces, emocast.preprocess.landmarks, emocast.data.face_track
from google.protobuf import message_factory
print("after import emocast:", hasattr(message_factory.MessageFactory, "GetPrototype"))
assert "mediapipe" not in sys.modules
from emocast.preprocess.landmarks import Landmarker
warnings.simplefilter("error")  # no fallback to the bundled face mesh
print("backend:", Landmarker(sys.argv[1]).backend)
print("after import_mediapipe:", hasattr(message_factory.MessageFactory, "GetPrototype"))
"""


def test_import_emocast_leaves_protobuf_alone_and_the_task_file_still_loads(tmp_path):
    import google.protobuf
    from google.protobuf import message_factory

    if int(google.protobuf.__version__.split(".")[0]) < 5 and hasattr(message_factory.MessageFactory, "GetPrototype"):
        pytest.skip("this protobuf still has MessageFactory.GetPrototype: there is nothing to shim")
    write_face_landmarker_task(tmp_path)
    p = subprocess.run([sys.executable, "-c", SHIM_CHECK, str(tmp_path)], capture_output=True, text=True,
                       timeout=120, cwd=REPO)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split("\n")[:3] == ["after import emocast: False", "backend: task", "after import_mediapipe: True"]
    assert "GetPrototype" not in p.stderr


def test_mediapipe_import_message_is_filtered():
    code = ("from emocast.media.mediapipe_faces import import_mediapipe; mp = import_mediapipe(); "
            "print(hasattr(mp, 'solutions'))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert p.returncode == 0 and p.stdout.strip() == "True"
    assert "GetPrototype" not in p.stderr


def test_mediapipe_quiet_drops_only_the_known_noise(capfd):
    with mediapipe_quiet():
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
        os.write(2, b"E0000 something real went wrong\n")
    err = capfd.readouterr().err
    assert "XNNPACK" not in err and "something real went wrong" in err


def _astronaut():
    import skimage.data

    return np.ascontiguousarray(skimage.data.astronaut())


def test_image_and_video_mode_share_the_loader(tmp_path):
    """With a .task file both modes use the Tasks API (the hand-made file holds an older landmark model: only the
    plumbing is checked); without it, the bundled mesh."""
    write_face_landmarker_task(tmp_path)
    image = _astronaut()
    for prefer_task, backend in ((True, "task"), (False, "face_mesh")):
        with FaceMeshes(tmp_path, video=False, prefer_task=prefer_task) as still, \
                FaceMeshes(tmp_path, video=True, prefer_task=prefer_task) as clip:
            assert still.backend == clip.backend == backend
            for meshes in (still.meshes(image), clip.meshes(image), clip.meshes(image)):
                assert meshes and all(m.shape[1] == 2 and np.isfinite(m).all() for m in meshes)


def test_bundled_mesh_in_both_modes_finds_the_same_face():
    """Image mode refines the iris (478 points), video mode tracks 468; the shared 468 points agree."""
    image = _astronaut()
    with FaceMeshes("/nonexistent-models-root", video=False) as still, \
            FaceMeshes("/nonexistent-models-root", video=True) as clip:
        a = still.meshes(image)
        b = [clip.meshes(image) for _ in range(3)][-1]  # tracked over three frames
    assert len(a) == len(b) == 1 and a[0].shape == (478, 2) and b[0].shape == (468, 2)
    assert np.abs(a[0][:468] - b[0][:468]).max() < 8  # pixels, on a 512 px image
