"""Acc_emo: label parsing, accuracy aggregation, and the Emotion-FAN definition on random weights."""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch

from emocast.errors import CheckpointError, InputError, MissingModelError
from emocast.evaluation import acc_emo
from emocast.scoring.emotion_fan import FAN_CLASSES, EmotionFAN, FrameAttentionNet


@pytest.mark.parametrize("name, emotion", [
    ("M003_angry_level_3_001.mp4", "angry"),          # MEAD flattened
    ("W015_front_surprised_level_2_014.mp4", "surprised"),
    ("M030_ang_3_004.mp4", "angry"),                  # EAT's short names
    ("W009_sad_3_003.mp4", "sad"),
    ("portrait1_clip07_happy.mp4", "happy"),
    ("portrait1-fear.mp4", "fear"),
    ("portrait1_clip07.mp4", None),                   # no emotion token
    ("happy_to_sad.mp4", None),                       # ambiguous
])
def test_label_from_name(name, emotion):
    assert acc_emo.label_from_name(name) == emotion


def test_labels_csv_takes_precedence(tmp_path):
    p = tmp_path / "labels.csv"
    p.write_text("video,emotion,prompt\nclip_a.mp4,Anger,x\nM003_happy_level_1_001,disgust,y\n", encoding="utf-8")
    labels = acc_emo.read_labels_csv(p)
    assert labels == {"clip_a": "angry", "M003_happy_level_1_001": "disgusted"}
    assert acc_emo.target_label(tmp_path / "M003_happy_level_1_001.mp4", labels) == "disgusted"
    assert acc_emo.target_label("M003_sad_level_1_002.mp4", labels) == "sad"
    (tmp_path / "bad.csv").write_text("name,label\na,b\n", encoding="utf-8")
    with pytest.raises(InputError, match="video and emotion"):
        acc_emo.read_labels_csv(tmp_path / "bad.csv")
    (tmp_path / "bad2.csv").write_text("video,emotion\na,bored\n", encoding="utf-8")
    with pytest.raises(InputError, match="line 2"):
        acc_emo.read_labels_csv(tmp_path / "bad2.csv")


def test_predicted_label_uses_fan_class_order():
    # EAT's MEAD head: 0 Happy, 1 Angry, 2 Disgust, 3 Fear, 4 Sad, 5 Neutral, 6 Surprised, 7 Contempt
    assert FAN_CLASSES == ("happy", "angry", "disgusted", "fear", "sad", "neutral", "surprised", "contempt")
    p = np.zeros(8)
    p[7] = 1
    assert acc_emo.predicted_label(p, FAN_CLASSES) == "contempt"
    p = np.eye(8)[2]
    assert acc_emo.predicted_label(p, FAN_CLASSES) == "disgusted"


def test_accuracy_aggregation():
    pred = ["happy", "angry", "sad", "sad", None, "fear"]
    tgt = ["happy", "sad", "sad", None, "angry", "fear"]
    r = acc_emo.accuracy(pred, tgt)
    assert r["num_labelled"] == 4  # rows with both a prediction and a target
    assert r["acc_emo"] == pytest.approx(3 / 4)
    assert r["per_class"]["sad"] == pytest.approx(1 / 2)
    assert r["per_class"]["happy"] == 1.0 and r["per_class"]["contempt"] is None
    assert acc_emo.accuracy([None], ["happy"])["acc_emo"] is None


def expected_fan_keys() -> dict[str, tuple]:
    """ResNet-18 (BasicBlock x [2,2,2,2]) + alpha/beta attention + pred_fc1/pred_fc2 (8 classes)."""
    o = {"conv1.weight": (64, 3, 7, 7)}

    def bn(name, c):
        for s in ("weight", "bias", "running_mean", "running_var"):
            o[f"{name}.{s}"] = (c,)

    bn("bn1", 64)
    cin = 64
    for li, c in enumerate((64, 128, 256, 512), start=1):
        for b in range(2):
            p = f"layer{li}.{b}"
            o[f"{p}.conv1.weight"] = (c, cin if b == 0 else c, 3, 3)
            bn(f"{p}.bn1", c)
            o[f"{p}.conv2.weight"] = (c, c, 3, 3)
            bn(f"{p}.bn2", c)
            if b == 0 and li > 1:
                o[f"{p}.downsample.0.weight"] = (c, cin, 1, 1)
                bn(f"{p}.downsample.1", c)
        cin = c
    o.update({"alpha.0.weight": (1, 512), "alpha.0.bias": (1,), "beta.0.weight": (1, 1024), "beta.0.bias": (1,),
              "pred_fc1.weight": (8, 512), "pred_fc1.bias": (8,), "pred_fc2.weight": (8, 1024),
              "pred_fc2.bias": (8,)})
    return o


def test_fan_keys():
    sd = {k: tuple(v.shape) for k, v in FrameAttentionNet().state_dict().items()
          if not k.endswith("num_batches_tracked")}
    assert sd == expected_fan_keys()


def _eat_second_level(net, feats_list):
    """EAT's batched evaluation (index-matrix formulation of _acc_test.val) for several videos at once."""
    f = torch.cat(feats_list)
    index = torch.cat([torch.full((len(x),), i) for i, x in enumerate(feats_list)])
    m = torch.stack([(index == i).float() for i in range(len(feats_list))])  # (V, N)
    alphas = net.alpha(f)
    vm = m.mm(f * alphas) / m.mm(alphas)
    vs_cate = torch.cat([f, m.t().mm(vm)], 1)
    betas = net.beta(vs_cate)
    pooled = m.mm(vs_cate * alphas) / m.mm(alphas * betas)
    return net.pred_fc2(pooled)


def test_video_head_matches_eat_batched_formulation():
    torch.manual_seed(0)
    net = FrameAttentionNet().eval()
    feats = [torch.rand(5, 512), torch.rand(3, 512)]
    with torch.no_grad():
        ours = torch.stack([net.video_logits(x) for x in feats])
        ref = _eat_second_level(net, feats)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


def _save_eat_checkpoint(path, net):
    state = OrderedDict(("module." + k, v) for k, v in net.state_dict().items())
    state["module.fc.weight"] = torch.zeros(7, 512)  # FER+ pre-training head: ignored like EAT's loader does
    torch.save({"epoch": 62, "state_dict": state, "accuracy": torch.tensor(84.37), "name": "x"}, path)


def test_emotion_fan_random_weights_real_shapes(tmp_path):
    torch.manual_seed(3)
    net = FrameAttentionNet()
    path = tmp_path / "emotion_fan_mead.pth"
    _save_eat_checkpoint(path, net)
    clf = EmotionFAN(path=path)
    assert torch.equal(clf.net.pred_fc2.weight, net.pred_fc2.weight)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (4, 256, 256, 3), dtype=np.uint8)  # resized to 224 internally
    p = clf.predict_video(frames)
    assert p.shape == (8,) and p.sum() == pytest.approx(1, abs=1e-5)
    pf = clf.predict_frames(frames)
    assert pf.shape == (4, 8)
    np.testing.assert_allclose(pf.sum(1), 1, atol=1e-5)


def test_emotion_fan_missing_and_wrong_checkpoint(tmp_path):
    with pytest.raises(MissingModelError, match="emotion_fan"):
        EmotionFAN(models_root=tmp_path)
    torch.save({"state_dict": {"module.conv1.weight": torch.zeros(64, 3, 7, 7)}}, tmp_path / "x.pth")
    with pytest.raises(CheckpointError, match="missing key"):
        EmotionFAN(path=tmp_path / "x.pth")


def test_fan_crop_is_black_outside_the_frame():
    from emocast.scoring.face_crops import fan_crops

    frame = np.full((100, 100, 3), 200, np.uint8)
    # a 40x40 face box at the left edge: the 60x60 crop reaches 10 px beyond the frame (dlib chips: black there)
    crop = fan_crops(frame[None], np.array([[0.0, 30.0, 40.0, 70.0]]), size=60)[0]
    assert crop.shape == (60, 60, 3)
    assert crop[:, :9].max() == 0 and crop[:, 11:].min() == 200
