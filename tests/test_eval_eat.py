"""EAT's evaluation protocol, step by step: each step of emocast.evaluation.eat / emocast.scoring.{pcavs_align,
dlib_faces} / emocast.evaluation.inception_imagenet against a transcription of the reference computation on a fixed
input (the reference file and function are named in each test; no reference code is imported), and one
end-to-end run of ``scripts/evaluate.py --protocol eat`` on the tiny stand-in models."""
from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from helpers import load_script
from emocast.cli import run_main
from emocast.evaluation import eat
from emocast.scoring import dlib_faces, pcavs_align

pytestmark = pytest.mark.usefixtures("one_thread")


def _landmarks(rng, n, jitter=2.0):
    from emocast.testing.tiny_eval_models import mean_face_68

    base = mean_face_68() * 120 + np.array([60, 40])
    return base[None] + rng.normal(0, jitter, (n, 68, 2))


# ------------------------------------------------------------------------------------------ PC-AVS (LSE crop)
def _align_68_reference(frames, landmarks):
    """Transcription of EAT code/scripts/align_68.py: get_eyes_mouths, get_affine (SimilarityTransform.estimate),
    affine_align_3landmarks, get_mouth_bias, the smoothing loop of align_folder, affine_align_img."""
    import skimage.transform as trans

    sumpoints, three_points_list = 0, []
    for lm in landmarks:
        three = np.zeros((3, 2))
        three[0], three[1], three[2] = lm[36:42].mean(0), lm[42:48].mean(0), lm[60:68].mean(0)
        sumpoints += three
        three_points_list.append(three)
    avg = sumpoints / len(landmarks)
    tform = trans.SimilarityTransform()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        tform.estimate(avg, np.array([[87, 59], [137, 59], [112, 120]], dtype=np.float32))
    M = tform.params[0:2, :]
    out, p_bias = [], None
    for i, img in enumerate(frames):
        aff = np.matmul(np.concatenate([three_points_list[i], np.ones((3, 1))], 1), M.transpose())
        bias = np.array([112, 120]) - aff[2]
        bias = bias if p_bias is None else p_bias * 0.2 + bias * 0.8
        p_bias = bias
        M_i = M.copy()
        M_i[:, 2] = M[:, 2] + bias
        out.append(cv2.warpAffine(img, M_i, (224, 224), borderValue=0.0))
    return np.stack(out)


def test_pcavs_crop_equals_align_68():
    """Landmarks as face-alignment 1.4.1 returns them (float32, whole pixels): the eye and mouth means are float32
    means, as in get_eyes_mouths."""
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (6, 200, 240, 3), dtype=np.uint8)
    lms = np.round(_landmarks(rng, 6)).astype(np.float32)
    ours = pcavs_align.align(frames, lms)
    assert ours.shape == (6, 224, 224, 3)
    np.testing.assert_array_equal(ours, _align_68_reference(frames, lms))
    three = np.zeros((3, 2))
    three[0] = lms[0][36:42].mean(0)
    assert pcavs_align.eyes_mouth(lms[0])[0].tolist() == three[0].tolist()
    assert three[0].tolist() != lms[0][36:42].astype(np.float64).mean(0).tolist()  # the float32 mean matters here


def test_fan_landmarks_follow_face_alignment_1_4_1(eat_models):
    """face-alignment 1.4.1 FaceAlignment.get_landmarks_from_image for one box (flip_input=False, the default up to
    1.4.x; the centre a float32 tensor); utils.crop and get_preds_fromhm are the same code in 1.4.1 and 1.5.0."""
    from face_alignment.utils import crop, get_preds_fromhm

    from emocast.scoring.landmarks68 import fan_landmarks, load_fan

    net = load_fan(eat_models / "eval/face_alignment/2DFAN4-11f355bf06.pth.tar")
    image = np.random.default_rng(8).integers(0, 256, (190, 170, 3), dtype=np.uint8)
    d = np.array([31.7, 22.3, 141.9, 150.6, 0.99])
    center = torch.tensor([d[2] - (d[2] - d[0]) / 2.0, d[3] - (d[3] - d[1]) / 2.0])
    center[1] = center[1] - (d[3] - d[1]) * 0.12
    scale = (d[2] - d[0] + d[3] - d[1]) / 195
    inp = torch.from_numpy(crop(image, center, scale).transpose((2, 0, 1))).float()
    inp.div_(255.0).unsqueeze_(0)
    with torch.no_grad():
        out = net(inp)[-1].detach().to(device="cpu", dtype=torch.float32).numpy()
    pts, pts_img, scores = get_preds_fromhm(out, center.numpy(), scale)
    ref = torch.from_numpy(pts_img).view(68, 2).numpy()
    ours = fan_landmarks(net, image, d)
    assert ours.dtype == np.float32
    np.testing.assert_array_equal(ours, ref)


def test_pcavs_geometry_puts_eyes_and_mouth_on_the_targets():
    lms = _landmarks(np.random.default_rng(1), 1, jitter=0.0)
    pts = pcavs_align.eyes_mouth(lms[0])
    m = pcavs_align.video_matrix(pts)
    moved = pts @ m[:, :2].T + m[:, 2]
    # the least-squares similarity maps the centroid onto the target centroid, and is a rotation + scale
    np.testing.assert_allclose(moved.mean(0), pcavs_align.TARGET.mean(0), atol=1e-9)
    np.testing.assert_allclose(m[:, :2] @ m[:, :2].T, np.eye(2) * np.linalg.det(m[:, :2]), atol=1e-12)
    shift = pcavs_align.mouth_shifts(pts[None], m)[0]
    np.testing.assert_allclose(moved[2] + shift, [112, 120], atol=1e-9)


# ------------------------------------------------------------------------------------------ Emotion-FAN chips
def _linear_equal_reference(image):
    """Transcription of Emotion-FAN face_align_cuda.py LinearEqual."""
    lut = np.zeros(256, dtype=image.dtype)
    hist = cv2.calcHist([image], [0], None, [256], [0.0, 255.0])
    lo, hi = 0, 255
    for b, v in enumerate(hist):
        if v != 0:
            lo = b
            break
    for b, v in enumerate(reversed(hist)):
        if v != 0:
            hi = 255 - b
            break
    for i in range(256):
        lut[i] = 0 if i < lo else 255 if i > hi else int(255.0 * (i - lo) / (hi - lo) + 0.5)
    return cv2.LUT(image, lut)


def _equal_color_reference(img, clahe: bool):
    """Transcription of face_align_cuda.py claheColor / hisEqulColor (in-place split/apply/merge/cvtColor)."""
    img = img.copy()
    ycrcb = cv2.cvtColor(img, cv2.COLOR_RGB2YCR_CB)
    channels = list(cv2.split(ycrcb))
    if clahe:
        cv2.createCLAHE(clipLimit=2.5, tileGridSize=(8, 8)).apply(channels[0], channels[0])
    else:
        cv2.equalizeHist(channels[0], channels[0])
    cv2.merge(channels, ycrcb)
    cv2.cvtColor(ycrcb, cv2.COLOR_YCR_CB2BGR, img)
    return img


def test_equalisations_equal_emotion_fan_reference():
    rng = np.random.default_rng(2)
    img = (rng.integers(40, 180, (64, 80, 3)) * np.linspace(0.5, 1, 80)[None, :, None]).astype(np.uint8)
    np.testing.assert_array_equal(dlib_faces.linear_equal(img), _linear_equal_reference(img))
    img[5:9, 3:7, 0] = 255  # calcHist(..., [0.0, 255.0]) leaves 255 out: the stretch ends at the largest value < 255
    np.testing.assert_array_equal(dlib_faces.linear_equal(img), _linear_equal_reference(img))
    assert dlib_faces.linear_equal(img)[..., 0].max() == 255 and dlib_faces.linear_equal(img)[0, 79, 0] != img[0, 79, 0]
    np.testing.assert_array_equal(dlib_faces.clahe_color(img), _equal_color_reference(img, True))
    np.testing.assert_array_equal(dlib_faces.hist_equal_color(img), _equal_color_reference(img, False))
    flat = np.full((8, 8, 3), 77, np.uint8)
    np.testing.assert_array_equal(dlib_faces.linear_equal(flat), flat)  # the reference divides by zero here


def test_detector_cascade_order_and_images():
    """face_align_cuda.py face_alignment: HOG, then CNN on the image, on LinearEqual(img), on claheColor of that,
    on hisEqulColor of that; the chip is cut from the image the successful detector saw."""
    rgb = np.random.default_rng(3).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    seen = []

    def cnn_at(k):
        def cnn(img):
            seen.append(img)
            return ["face"] if len(seen) == k else []
        return cnn

    assert dlib_faces.detect_cascade(rgb, lambda im: ["face"], None)[2] == "hog"
    assert dlib_faces.detect_cascade(rgb, lambda im: [], None)[2] is None  # no CNN model: HOG only
    expected = [rgb, _linear_equal_reference(rgb)]
    expected.append(_equal_color_reference(expected[-1], True))
    expected.append(_equal_color_reference(expected[-1], False))
    for k, stage in enumerate(dlib_faces.CASCADE[1:], start=1):
        seen.clear()
        dets, img, got = dlib_faces.detect_cascade(rgb, lambda im: [], cnn_at(k))
        assert got == stage and dets == ["face"]
        np.testing.assert_array_equal(img, expected[k - 1])
    seen.clear()
    assert dlib_faces.detect_cascade(rgb, lambda im: [], cnn_at(99))[2] is None and len(seen) == 4


# ------------------------------------------------------------------------------------------ FID crops
def _crop_and_align_reference(image, shape, base, base_close):
    """Transcription of EAT code/utils_crop.py crop_and_align, as preprocess.py calls it: crop_image(image,
    bool_no_crop=True) returns the frame and the integer landmarks of the first HOG face unchanged."""
    from skimage import transform as tf

    roi, landmark = image, shape
    template = base if np.sum(landmark[37:39, 1] - landmark[40:42, 1]) < -9 else base_close
    pts2 = np.float32(template[27:45, :])
    pts1 = np.float32(landmark[27:45, :])
    tform = tf.SimilarityTransform()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        tform.estimate(pts2, pts1)
    dst = tf.warp(roi, tform, output_shape=(163, 163))
    dst = np.array(dst * 255, dtype=np.uint8)
    return dst[1:129, 1:129, :]


@pytest.mark.parametrize("rect,closed", [((70, 50, 170, 150), False), ((170, 140, 250, 222), True)])
def test_fid_crop_equals_crop_and_align(rect, closed):
    """The whole frame is warped (a face at the border gets black outside it); the template is picked on the
    frame's integer landmarks."""
    from emocast.testing.tiny_eval_models import mean_face_68

    rng = np.random.default_rng(4)
    image = rng.integers(0, 256, (220, 240, 3), dtype=np.uint8)
    shape = (mean_face_68() * (rect[2] - rect[0]) + rect[:2]).astype(int)
    if closed:
        shape[[37, 38], 1] = shape[[41, 40], 1] - 1
    base = mean_face_68() * 110 + 26
    closed_base = base + 1.5
    assert (dlib_faces.pick_template(shape, base, closed_base) is closed_base) == closed
    ours = dlib_faces.align_128(image, shape, dlib_faces.pick_template(shape, base, closed_base))
    assert ours.shape == (128, 128, 3)
    np.testing.assert_array_equal(ours, _crop_and_align_reference(image, shape, base, closed_base))
    assert (ours.reshape(-1, 3) == 0).all(1).any() == closed  # the second face reaches past the frame


def test_fid_crops_are_stored_as_mpeg4_and_read_back(tmp_path):
    """EAT code/preprocess.py align_crop_vids: cv2.VideoWriter(MP4V, 25 fps) of cvtColor(crop, BGR2RGB), read back
    by test_fid.py with imageio (ffmpeg)."""
    import imageio

    rng = np.random.default_rng(9)
    crops = np.stack([cv2.GaussianBlur(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8), (7, 7), 3)
                      for _ in range(4)])
    vwriter = cv2.VideoWriter(str(tmp_path / "ref.mp4"), cv2.VideoWriter_fourcc("M", "P", "4", "V"), 25, (128, 128))
    for frame in crops:
        vwriter.write(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    vwriter.release()
    ref = np.stack([im for im in imageio.get_reader(str(tmp_path / "ref.mp4"), "ffmpeg")])  # test_fid.py loop
    ours = eat.mp4v_roundtrip(crops, tmp_path / "ours.mp4")
    assert (tmp_path / "ours.mp4").read_bytes() == (tmp_path / "ref.mp4").read_bytes()
    np.testing.assert_array_equal(ours, ref)
    assert 0 < np.abs(ours.astype(int) - crops).mean() < 20  # lossy, but the same picture


def test_fid_pairing_equals_test_fid():
    """EAT code/test_fid.py: both sides resampled to the shorter length, then min(length, 5) linspace samples."""
    fake, real = np.arange(17)[:, None, None, None] * np.ones((1, 2, 2, 3)), np.arange(11)[:, None, None, None] \
        * np.ones((1, 2, 2, 3)) + 100
    f, r = eat.paired_samples(fake.astype(np.uint8), real.astype(np.uint8))
    length = 11
    fid_ = np.linspace(0, 17, length, False).astype(np.int32)
    gid = np.linspace(0, 11, length, False).astype(np.int32)
    samp = np.linspace(0, length, min(length, 5), False).astype(np.int32)
    np.testing.assert_array_equal(f[:, 0, 0, 0], fake[fid_][samp][:, 0, 0, 2])
    np.testing.assert_array_equal(r[:, 0, 0, 0], real[gid][samp][:, 0, 0, 2])
    assert len(eat.paired_samples(fake[:3].astype(np.uint8), real[:0].astype(np.uint8))[0]) == 0


# ------------------------------------------------------------------------------------------ Inception (torchvision)
def test_imagenet_inception_layout_and_input_transform():
    from emocast.evaluation.inception_imagenet import ImageNetInception, eat_preprocess, transform_input

    net = ImageNetInception()
    assert sum(p.numel() for p in net.parameters()) == 27_161_264  # torchvision inception_v3(aux_logits=True)
    keys = net.state_dict().keys()
    assert "AuxLogits.conv1.conv.weight" in keys and net.state_dict()["fc.weight"].shape == (1000, 2048)
    frames = np.random.default_rng(5).integers(0, 256, (2, 128, 128, 3), dtype=np.uint8)
    x = eat_preprocess(frames)
    # code/utils_fid.py preprocess_image: float32 / 255, cv2.resize to 299 (bilinear), channels first
    ref = torch.stack([torch.from_numpy(np.rollaxis(cv2.resize(f.astype(np.float32) / 255, (299, 299)), 2))
                       for f in frames])
    assert torch.equal(x, ref)
    y = x * 2 - 1
    # torchvision Inception3._transform_input
    ch = [torch.unsqueeze(y[:, 0], 1) * (0.229 / 0.5) + (0.485 - 0.5) / 0.5,
          torch.unsqueeze(y[:, 1], 1) * (0.224 / 0.5) + (0.456 - 0.5) / 0.5,
          torch.unsqueeze(y[:, 2], 1) * (0.225 / 0.5) + (0.406 - 0.5) / 0.5]
    assert torch.equal(transform_input(y), torch.cat(ch, 1))


def test_imagenet_inception_pools_are_torchvisions():
    """torchvision's InceptionA/C/E: F.avg_pool2d(x, 3, stride=1, padding=1) (padding counted), no max pool."""
    from emocast.evaluation.inception import InceptionE
    from emocast.evaluation.inception_imagenet import ImageNetInception

    net = ImageNetInception()
    assert net.Mixed_5b.include_pad and net.Mixed_6e.include_pad and net.Mixed_7c.pool == "avg_pad"
    x = torch.ones(1, 2048, 4, 4)
    block = InceptionE(2048, pool="avg_pad")
    assert block.pool == "avg_pad"
    corner = torch.nn.functional.avg_pool2d(x, 3, 1, 1)[0, 0, 0, 0]
    assert corner == pytest.approx(4 / 9)  # padding counted in the mean


# ------------------------------------------------------------------------------------------ storage and ffmpeg
def test_jpeg_roundtrip_equals_imwrite_imread(tmp_path):
    """cv2.imwrite then cv2.imread (frames, PC-AVS warp input, chips' source) or PIL's open(...).convert("RGB")
    (EAT's Emotion-FAN loader; skimage.io.imread in face-alignment's directory reader)."""
    from PIL import Image

    img = np.random.default_rng(6).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "1.jpg"), img)
    assert eat.jpeg_bytes(img) == (tmp_path / "1.jpg").read_bytes()
    np.testing.assert_array_equal(eat.jpeg_roundtrip(img), cv2.imread(str(tmp_path / "1.jpg")))
    np.testing.assert_array_equal(eat.pil_reads(eat.jpeg_bytes(img)),
                                  np.asarray(Image.open(tmp_path / "1.jpg").convert("RGB")))


def test_ground_truth_wav_equals_eats_two_commands(tmp_path):
    """EAT's wavs_extract_from_newmead: preprocess_cvt_VideoWithAudio.py (ffmpeg -i gt.mp4 -filter:v fps=25 -ac 1
    -ar 16000 out.mp4), then extract_audio_from_vid.py (ffmpeg -i out.mp4 out.wav); ours drops the video stream."""
    import subprocess

    from emocast.testing.tiny_eval_models import write_test_video

    rng = np.random.default_rng(10)
    write_test_video(tmp_path / "gt.mp4", rng.integers(0, 255, (9, 48, 64, 3), dtype=np.uint8),
                     (rng.standard_normal(9 * 1920) * 3000).astype(np.int16), fps=30, sample_rate=48000)
    for cmd in (f"-i {tmp_path / 'gt.mp4'} -filter:v fps=25 -ac 1 -ar 16000 {tmp_path / 'cvt.mp4'}",
                f"-i {tmp_path / 'cvt.mp4'} {tmp_path / 'ref.wav'}"):
        subprocess.run(["ffmpeg", "-loglevel", "error", "-y", *cmd.split()], check=True)
    eat.ground_truth_wav(tmp_path / "gt.mp4", tmp_path / "ours.wav", tmp_path)
    assert (tmp_path / "ours.wav").read_bytes() == (tmp_path / "ref.wav").read_bytes()


def test_lse_inputs_follow_the_ffmpeg_chain(tmp_path):
    """``-r 25``, PC-AVS crop, mux with the ground-truth audio, then syncnet_python's ``-vf scale=224:224`` JPEG
    frames and 16 kHz audio: 224x224 BGR frames, one per 25 fps frame, the ground truth's audio length."""
    from emocast.testing.tiny_eval_models import write_test_video

    rng = np.random.default_rng(7)
    n = 8
    write_test_video(tmp_path / "gen.mp4", rng.integers(0, 255, (n, 160, 176, 3), dtype=np.uint8),
                     (rng.standard_normal(n * 640) * 2000).astype(np.int16))
    gt_audio = (rng.standard_normal(n * 640) * 2000).astype(np.int16)
    from scipy.io import wavfile

    wavfile.write(tmp_path / "gt.wav", 16000, gt_audio)
    lm = _landmarks(rng, 1, 0.0)[0]
    frames, audio, aligned = eat.lse_inputs(tmp_path / "gen.mp4", lambda rgb: lm, tmp_path / "gt.wav")
    assert frames.shape == (n, 224, 224, 3) and aligned == n
    assert abs(len(audio) - n * 640) <= 1024  # AAC in the mp4: priming and padding samples
    assert np.corrcoef(audio[:4000].astype(float), gt_audio[:4000].astype(float))[0, 1] > 0.9
    with pytest.raises(Exception, match="no face in 8 of 8 frames"):
        eat.lse_inputs(tmp_path / "gen.mp4", lambda rgb: None)


# ------------------------------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def eat_models(tiny_models):
    """The session's tiny kit: its eval/ holds the stand-ins of every evaluation component."""
    return tiny_models


def test_stand_ins_load_and_wrong_files_fail(eat_models, tmp_path):
    from emocast.errors import CheckpointError
    from emocast.scoring.landmarks68 import fan_stacks, load_fan

    fan = load_fan(eat_models / "eval/face_alignment/2DFAN4-11f355bf06.pth.tar")
    assert fan_stacks(fan.state_dict()) == 1 and not fan.training
    torch.save({"w": torch.zeros(2)}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="2D-FAN"):
        load_fan(tmp_path / "bad.pth")
    chips = dlib_faces.EmotionChips(eat_models)
    assert not chips.has_cnn  # no stand-in for the optional CNN detector


def test_protocol_eat_end_to_end(eat_models, tmp_path):
    from emocast.testing import synthetic

    gen, gt = tmp_path / "gen", tmp_path / "gt"
    name = "M003_angry_level_1_001.mp4"
    synthetic.make_talking_video(gen / name, face="astronaut", seconds=0.28, fps=25, size=(128, 112), seed=0)
    synthetic.make_talking_video(gt / name, face="astronaut", seconds=0.28, fps=25, size=(128, 112), seed=1)
    out = tmp_path / "out"
    code = run_main(load_script("evaluate").main, [str(a) for a in (
        "--videos", gen, "--gt", gt, "--out", out, "--models", eat_models, "--device", "cpu", "--no-progress",
        "lse.vshift=2")])
    assert code == 0
    summary = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert summary["protocols"] == {"acc_emo": "eat", "lse": "eat", "fid": "eat"}
    assert all(np.isfinite(summary[k]) for k in ("acc_emo", "lse_d", "lse_c", "fid"))
    assert summary["fid_frames_generated"] == summary["fid_frames_reference"] == 5
    with (out / "per_video.csv").open(encoding="utf-8") as fh:
        row = next(csv.DictReader(fh))
    assert (row["acc_emo_frames"], row["acc_emo_faces"], row["acc_emo_dropped"]) == ("7", "7", "0")
    assert row["acc_emo_detector"] == "hog:7" and row["lse_face_frames"] == "7" and row["lse_audio"] == "ground truth"
    assert row["fid_faces"] == "7" and row["fid_frames"] == "5" and not row["error"]
    assert "Protocols: Acc_emo eat, LSE eat, FID eat" in (out / "table.md").read_text(encoding="utf-8")


# ------------------------------------------------------------------------------------------ test sets
def test_mead_eat_test_set(tmp_path, capsys):
    """4 test subjects x 8 emotions x 8 clips = 256 rows; reference = first frame of the subject's neutral clip;
    outputs named like the ground truth, which is linked under those names."""
    from PIL import Image

    from emocast.labels.emotions import EMOTIONS
    from emocast.labels.mead import TEST_IDENTITIES
    from emocast.testing.tiny_eval_models import write_test_video

    mead = tmp_path / "MEAD"
    for ident in TEST_IDENTITIES + ("M005",):
        for emo in EMOTIONS:
            level = 1 if emo == "neutral" else 3
            folder = mead / ident / "video" / "front" / emo / f"level_{level}"
            folder.mkdir(parents=True)
            for clip in range(1, 11):
                (folder / f"{clip:03d}.mp4").write_bytes(b"")  # only the neutral first clip is read
        write_test_video(mead / ident / "video/front/neutral/level_1/001.mp4",
                         np.full((2, 32, 32, 3), 40 + TEST_IDENTITIES.index(ident) * 50 if ident != "M005" else 0,
                                 np.uint8))
    out = tmp_path / "testsets" / "mead.csv"
    code = run_main(load_script("make_testset_manifest").main, ["--mead-eat", str(mead), "--out", str(out)])
    assert code == 0
    with (tmp_path / "testsets" / "mead_labels.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 256 and {r["image"] for r in rows} == {f"{i}.png" for i in TEST_IDENTITIES}
    for emo in EMOTIONS:
        assert sum(r["emotion"] == emo for r in rows) == 32
    assert rows[0]["video"] == "M003_angry_level_3_001.mp4" and "M003_angry_level_3_009.mp4" not in {
        r["video"] for r in rows}
    gt = tmp_path / "testsets" / "mead_gt"
    assert len(list(gt.iterdir())) == 256 and (gt / "W015_neutral_level_1_008.mp4").resolve() == \
        (mead / "W015/video/front/neutral/level_1/008.mp4").resolve()
    assert np.asarray(Image.open(tmp_path / "testsets" / "references" / "M030.png")).mean() == pytest.approx(90, abs=3)
    # EAT's own selections (test_mead.py): every level-3 / neutral level-1 clip, or a list of EAT names
    out_all = tmp_path / "testsets" / "all.csv"
    assert run_main(load_script("make_testset_manifest").main,
                    ["--mead-eat", str(mead), "--mead-clips", "all", "--out", str(out_all)]) == 0
    assert len((tmp_path / "testsets" / "all.csv").read_text().splitlines()) == 1 + 4 * 8 * 10
    np.save(tmp_path / "sample.npy", np.array(["M003_M003_ang_3_002", "W015_W015_neu_1_010", "M030_sur_3_007"]))
    refs = tmp_path / "refs"
    refs.mkdir()
    for ident in TEST_IDENTITIES:
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(refs / f"{ident}.png")
    out_names = tmp_path / "testsets" / "names.csv"
    assert run_main(load_script("make_testset_manifest").main,
                    ["--mead-eat", str(mead), "--mead-names", str(tmp_path / "sample.npy"), "--mead-references",
                     str(refs), "--out", str(out_names)]) == 0
    with (tmp_path / "testsets" / "names_labels.csv").open(encoding="utf-8") as fh:
        picked = list(csv.DictReader(fh))
    assert sorted(r["video"] for r in picked) == ["M003_angry_level_3_002.mp4", "M030_surprised_level_3_007.mp4",
                                                  "W015_neutral_level_1_010.mp4"]
    assert {r["image"] for r in picked} == {"M003.png", "M030.png", "W015.png"}
    (tmp_path / "bad.txt").write_text("M003_ang_3_002\nM003_ang_3_099\n")
    assert run_main(load_script("make_testset_manifest").main,
                    ["--mead-eat", str(mead), "--mead-names", str(tmp_path / "bad.txt"), "--out", str(out_names)]) == 2
    assert "M003_ang_3_099 (EAT name)" in capsys.readouterr().err

    (mead / "W009/video/front/sad/level_3/001.mp4").unlink()
    for clip in range(2, 11):
        (mead / f"W009/video/front/sad/level_3/{clip:03d}.mp4").unlink()
    code = run_main(load_script("make_testset_manifest").main, ["--mead-eat", str(mead), "--out", str(out)])
    assert code == 2 and "W009/video/front/sad/level_3 (0 of 8 clips)" in capsys.readouterr().err


def test_table2_report_has_the_paper_row_and_protocols(tmp_path, capsys):
    from emocast.evaluation.report import table2_markdown

    ours = {"method": "EmoCAST", "num_videos": 256, "acc_emo": 0.8, "lse_d": 8.5, "lse_c": 7.0, "fid": 30.0,
            "protocols": {"acc_emo": "eat", "lse": "eat", "fid": "eat"}}
    wild = {**ours, "num_videos": 280, "fid": None, "protocols": {"acc_emo": "eat", "lse": "eat"}}
    text = table2_markdown({"mead": ours, "wild": wild})
    assert "| EmoCAST (paper) | 83.60% | 8.67 | 6.79 | 35.89 |" in text
    assert "| EmoCAST (paper) | 56.43% | 8.12 | 6.94 | - |" in text and "| EmoCAST | 80.00% | 8.50 | 7.00 | - |" in text
    assert "Protocols: Acc_emo eat, LSE eat, FID eat" in text and "### wild (280 videos)" in text
    assert run_main(load_script("table2").main, ["--renders", str(tmp_path)]) == 2
    assert "neither mead/ nor wild/" in capsys.readouterr().err
