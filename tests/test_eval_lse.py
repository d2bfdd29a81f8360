"""SyncNet definition/loading, MFCC, the LSE offset search and the SyncNet face crop."""
from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import pytest
import torch

from emocast.errors import CheckpointError, InputError, MissingModelError
from emocast.scoring import lse
from emocast.scoring.face_crops import center_square, interpolate_boxes, syncnet_crops
from emocast.scoring.mfcc import mfcc
from emocast.scoring.syncnet import SyncNet, load_syncnet, load_syncnet_file


def expected_syncnet_shapes() -> dict[str, tuple]:
    """Key -> shape of syncnet_python's ``S`` (SyncNetModel.py), written from its layer list."""
    out = {}

    def conv_bn(prefix, idx, shape):
        out[f"{prefix}.{idx}.weight"] = shape
        out[f"{prefix}.{idx}.bias"] = (shape[0],)
        for s in ("weight", "bias", "running_mean", "running_var"):
            out[f"{prefix}.{idx + 1}.{s}"] = (shape[0],)

    aud = [(0, (64, 1, 3, 3)), (4, (192, 64, 3, 3)), (8, (384, 192, 3, 3)), (11, (256, 384, 3, 3)),
           (14, (256, 256, 3, 3)), (18, (512, 256, 5, 4))]
    lip = [(0, (96, 3, 5, 7, 7)), (4, (256, 96, 1, 5, 5)), (8, (256, 256, 1, 3, 3)), (11, (256, 256, 1, 3, 3)),
           (14, (256, 256, 1, 3, 3)), (18, (512, 256, 1, 6, 6))]
    for i, s in aud:
        conv_bn("netcnnaud", i, s)
    for i, s in lip:
        conv_bn("netcnnlip", i, s)
    for head in ("netfcaud", "netfclip"):
        out[f"{head}.0.weight"], out[f"{head}.0.bias"] = (512, 512), (512,)
        for s in ("weight", "bias", "running_mean", "running_var"):
            out[f"{head}.1.{s}"] = (512,)
        out[f"{head}.3.weight"], out[f"{head}.3.bias"] = (1024, 512), (1024,)
    return out


def test_syncnet_keys_match_syncnet_python_layout():
    sd = {k: tuple(v.shape) for k, v in SyncNet().state_dict().items() if not k.endswith("num_batches_tracked")}
    assert sd == expected_syncnet_shapes()
    assert sum(p.numel() for p in SyncNet().parameters()) == 13_631_616  # 54.5 MB of fp32, the released file size


def test_syncnet_random_weights_real_shapes():
    torch.manual_seed(0)
    net = SyncNet().eval()
    with torch.no_grad():
        v = net.embed_video(torch.rand(2, 3, 5, 224, 224) * 255)
        a = net.embed_audio(torch.randn(2, 1, 13, 20) * 10)
    assert v.shape == (2, 1024) and a.shape == (2, 1024)
    assert torch.isfinite(v).all() and torch.isfinite(a).all()
    assert not torch.allclose(v[0], v[1])  # depends on the input


def test_load_state_dict_without_bn_counters_and_reject_wrong_files(tmp_path):
    torch.manual_seed(1)
    src = SyncNet()
    state = OrderedDict((k, v) for k, v in src.state_dict().items() if not k.endswith("num_batches_tracked"))
    path = tmp_path / "syncnet_v2.model"
    torch.save(state, path)
    net = load_syncnet_file(path)
    assert torch.equal(net.netfclip[3].weight, src.netfclip[3].weight)
    assert not net.training

    bad = OrderedDict(state)
    bad["netfcaud.3.weight"] = torch.zeros(512, 512)
    torch.save(bad, tmp_path / "bad.model")
    with pytest.raises(CheckpointError, match="shape mismatch"):
        load_syncnet_file(tmp_path / "bad.model")
    (tmp_path / "junk.model").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_syncnet_file(tmp_path / "junk.model")


def test_missing_syncnet_gives_download_report(tmp_path):
    with pytest.raises(MissingModelError, match="download_models.py --only syncnet"):
        load_syncnet(tmp_path)


def test_mfcc_matches_python_speech_features_golden_values():
    # reference: python_speech_features 0.6 mfcc(x, 16000) on this signal (columns 0 and 5)
    x = (1000 * np.sin(2 * np.pi * 440 * np.arange(2000) / 16000)).astype(np.int16)
    golden = np.array([[14.90121, 14.905826], [18.799494, 19.494717], [1.671392, 2.664575],
                       [-14.170005, -13.273705], [-27.188937, -26.100263], [-33.567975, -32.594637],
                       [-29.641578, -28.64145], [-18.578238, -17.703405], [-3.272843, -2.342761],
                       [10.048703, 10.755658], [17.890204, 18.807074], [18.155327, 18.813244],
                       [11.923759, 12.328507]])
    cc = mfcc(x)
    assert cc.shape == (13, 1 + math.ceil((2000 - 400) / 160))
    np.testing.assert_allclose(cc[:, [0, 5]], golden, atol=2e-5)
    assert mfcc(np.zeros(100, np.int16)).shape == (13, 1)  # shorter than one frame


def test_mfcc_matches_python_speech_features_when_installed():
    psf = pytest.importorskip("python_speech_features")
    rng = np.random.default_rng(0)
    for n in (100, 401, 2000, 16123):
        x = (rng.standard_normal(n) * 3000).astype(np.int16)
        np.testing.assert_allclose(mfcc(x), psf.mfcc(x, 16000).T, rtol=1e-9, atol=1e-9)


def _one_hot_embeddings(n: int, off: int):
    """Audio embedding j = e_j; video embedding i = e_{i-off} (zero when i-off is out of range)."""
    a = torch.eye(n + 8)[:n]
    v = torch.zeros_like(a)
    for i in range(n):
        if 0 <= i - off < n:
            v[i] = a[i - off]
    return v, a


def _expected_curve(n: int, off: int, vshift: int) -> np.ndarray:
    """The mean distance per shift, counted case by case (distances are 0, 1 or sqrt(2))."""
    curve = np.zeros(2 * vshift + 1)
    for s in range(2 * vshift + 1):
        tot = 0.0
        for i in range(n):
            j = i + s - vshift
            v_zero, a_zero = not (0 <= i - off < n), not (0 <= j < n)
            if v_zero and a_zero:
                d = 0.0
            elif v_zero or a_zero:
                d = 1.0
            else:
                d = 0.0 if j == i - off else math.sqrt(2)
            tot += d
        curve[s] = tot / n
    return curve


@pytest.mark.parametrize("off", [3, -5, 0])
def test_offset_search_recovers_known_offset(off):
    n, vshift = 40, 15
    v, a = _one_hot_embeddings(n, off)
    dists = lse.shift_distances(v, a, vshift)
    assert dists.shape == (n, 2 * vshift + 1)
    curve = _expected_curve(n, off, vshift)
    np.testing.assert_allclose(dists.mean(0).numpy(), curve, atol=1e-4)
    res = lse.sync_scores(dists, vshift)
    assert res.offset == off
    assert res.min_dist == pytest.approx(curve.min(), abs=1e-4)
    assert res.confidence == pytest.approx(np.median(curve) - curve.min(), abs=1e-4)
    assert res.num_windows == n


def test_window_count_and_short_video():
    assert lse.num_windows(30, 30 * 640) == 25
    assert lse.num_windows(30, 20 * 640) == 15  # the shorter stream decides
    net = SyncNet().eval()
    with pytest.raises(InputError, match="too short"):
        lse.evaluate_sync(net, np.zeros((5, 224, 224, 3), np.uint8), np.zeros(5 * 640, np.int16))


def _reference_evaluate(net, crops_bgr, audio, vshift, batch_size):
    """SyncNetInstance.evaluate's tensor layout and loop, transcribed: (1, 3, T, H, W) video, (1, 1, 13, M) MFCC,
    window ``v`` = frames ``v..v+4`` and MFCC columns ``4v..4v+19``, calc_pdist, mean over windows."""
    im = torch.from_numpy(np.transpose(np.stack(list(crops_bgr), axis=3)[None], (0, 3, 4, 1, 2)).astype(float)).float()
    cct = torch.from_numpy(mfcc(audio)[None, None].astype(float)).float()
    lastframe = min(len(crops_bgr), math.floor(len(audio) / 640)) - 5
    im_feat, cc_feat = [], []
    with torch.no_grad():
        for i in range(0, lastframe, batch_size):
            idx = range(i, min(lastframe, i + batch_size))
            im_feat.append(net.embed_video(torch.cat([im[:, :, v:v + 5] for v in idx], 0)))
            cc_feat.append(net.embed_audio(torch.cat([cct[:, :, :, v * 4:v * 4 + 20] for v in idx], 0)))
    im_feat, cc_feat = torch.cat(im_feat), torch.cat(cc_feat)
    feat2p = torch.nn.functional.pad(cc_feat, (0, 0, vshift, vshift))
    dists = [torch.nn.functional.pairwise_distance(im_feat[[i], :].repeat(2 * vshift + 1, 1),
                                                   feat2p[i:i + 2 * vshift + 1, :]) for i in range(len(im_feat))]
    mdist = torch.mean(torch.stack(dists, 1), 1)
    minval, minidx = torch.min(mdist, 0)
    return int(vshift - minidx), float(minval), float(torch.median(mdist) - minval)


def test_evaluate_sync_equals_syncnet_python_loop_on_random_weights():
    torch.manual_seed(2)
    net = SyncNet().eval()
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 255, (10, 224, 224, 3), dtype=np.uint8)
    audio = (rng.standard_normal(10 * 640 + 100) * 3000).astype(np.int16)
    res = lse.evaluate_sync(net, crops, audio, vshift=2, batch_size=3)
    assert res.num_windows == 5 and -2 <= res.offset <= 2
    assert res.min_dist > 0 and res.confidence >= 0
    offset, min_dist, conf = _reference_evaluate(net, crops, audio, vshift=2, batch_size=4)
    assert res.offset == offset
    assert res.min_dist == pytest.approx(min_dist, rel=1e-5)
    assert res.confidence == pytest.approx(conf, rel=1e-4, abs=1e-6)


def test_syncnet_crop_geometry():
    # a 100x100 face box centred at (200, 150) in a 400x300 frame: s = 50, crop rows 100..240, cols 130..270
    frame = np.zeros((300, 400, 3), np.uint8)
    frame[100:240, 130:270] = 200
    frame[149:151, 199:201] = 255  # box centre marker
    boxes = np.array([[150, 100, 250, 200]] * 15, dtype=float)
    crops = syncnet_crops(np.stack([frame] * 15), boxes)
    assert crops.shape == (15, 224, 224, 3)
    c = crops[7].astype(int)
    assert c[5:-5, 5:-5].min() >= 190  # the crop covers exactly the painted rectangle
    # the box centre is at 1/2.8 of the crop height (the mouth region gets the lower part)
    ys, xs = np.nonzero(c[..., 0] > 230)
    assert abs(ys.mean() - 224 * 50 / 140) < 3 and abs(xs.mean() - 112) < 3


def test_box_interpolation_and_center_square():
    boxes = interpolate_boxes([None, (0, 0, 10, 10), None, (10, 0, 20, 10), None])
    np.testing.assert_allclose(boxes[:, 0], [0, 0, 5, 10, 10])
    with pytest.raises(InputError):
        interpolate_boxes([None, None])
    sq = center_square(np.zeros((2, 60, 80, 3), np.uint8), 32)
    assert sq.shape == (2, 32, 32, 3)


def test_full_mode_squeezes_the_whole_frame_for_syncnet():
    from emocast.scoring.face_crops import crops_for

    frame = np.zeros((112, 224, 3), np.uint8)
    frame[:, :56] = 255  # left quarter white: squeezed (not centre-cropped) it stays the left quarter
    crop = crops_for(frame[None], "full", "syncnet")[0]
    assert crop.shape == (224, 224, 3)
    assert crop[:, :50].min() == 255 and crop[:, 60:].max() == 0
    assert crops_for(frame[None], "full", "fan")[0][:, :10].max() == 0  # Emotion-FAN: the centred square


def test_detect_mode_crops_a_real_face():
    pytest.importorskip("mediapipe")
    skdata = pytest.importorskip("skimage.data")
    from emocast.scoring.face_crops import FaceDetector, crops_for

    img = skdata.astronaut()  # 512x512, one face around x 175..280, y 70..170
    frames = np.stack([img] * 3)
    det = FaceDetector()
    box = det.boxes(frames)[0]
    assert 150 < (box[0] + box[2]) / 2 < 300 and 50 < (box[1] + box[3]) / 2 < 200
    for kind in ("syncnet", "fan"):
        crops = crops_for(frames, "detect", kind, det)
        assert crops.shape == (3, 224, 224, 3)
    with pytest.raises(InputError, match="no face detected"):
        det.boxes(np.zeros((2, 64, 64, 3), np.uint8), "blank.mp4")
