"""What a user meets with bad inputs and faults, through ``scripts/inference.py`` on the tiny model kit: image
formats and sizes, audio formats and lengths, prompts, checkpoints, output locations, manifests, options and
signals. For every case: the exit code, one message naming the file or option (no traceback), and nothing stray
in the output folder (exactly the expected videos, no temporary files).

Most failures stop before any model is loaded (the inputs are decoded and the outputs checked first), so the
cases are cheap; the renders use one denoising step and clips of 4 frames.
"""
from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from helpers import write_aac
from emocast.cli import run_main
from emocast.testing.synthetic import face_image, speech

from test_inference_errors import FAST, REPO, cli  # noqa: F401 (cli: the fixture of scripts/inference.py)

SECONDS = 0.16  # the speech files: 4 video frames, one clip

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Every input of the cases, good and bad."""
    from emocast.media.video_writer import VideoWriter

    d = tmp_path_factory.mktemp("inputs")
    face = face_image("astronaut")[0]
    img = Image.fromarray(face)
    img.save(d / "portrait.png")
    img.save(d / "portrait.jpg", quality=90)
    (d / "empty.png").write_bytes(b"")
    (d / "truncated.png").write_bytes((d / "portrait.png").read_bytes()[:200])
    (d / "notes.jpg").write_text("this is not a picture\n")
    (d / "cut.jpg").write_bytes((d / "portrait.jpg").read_bytes()[:3000])
    (d / "album.png").mkdir()
    Image.fromarray(np.full((160, 160, 3), 20, np.uint8)).save(d / "dark.png")  # the tiny detector: no face
    Image.fromarray(np.asarray(img.resize((96, 84)))).save(d / "small.png")  # face ~29 px
    rgba = np.dstack([face, np.full(face.shape[:2], 255, np.uint8)])
    rgba[:40, :40, 3] = 0
    Image.fromarray(rgba).save(d / "rgba.png")
    gray16 = (np.asarray(img.convert("L"), np.uint16) * 257)
    Image.fromarray(gray16).save(d / "gray16.png")
    img.convert("CMYK").save(d / "cmyk.jpg")
    img.save(d / "photo.webp")
    img.convert("P").save(d / "palette.gif")
    img.save(d / "scan.tiff")
    rotated = img.rotate(90, expand=True)  # stored lying on its side, EXIF says: turn it back
    exif = rotated.getexif()
    exif[0x0112] = 6
    rotated.save(d / "rotated.jpg", exif=exif)

    voice = speech("Hello.", SECONDS, sr=16000)  # 4 video frames: one clip of the fast settings
    sf.write(d / "speech.wav", voice, 16000)
    write_aac(d / "aac.m4a", voice, 16000, "ipod")
    sf.write(d / "lame.mp3", voice, 16000, format="MP3")
    sf.write(d / "vorbis.ogg", voice, 16000, format="OGG", subtype="VORBIS")
    stereo = np.stack([speech("Hello.", SECONDS, sr=44100)] * 2, 1)
    sf.write(d / "stereo44k.flac", stereo, 44100)
    sf.write(d / "u8.wav", voice, 16000, subtype="PCM_U8")
    with VideoWriter(d / "talking.mp4", audio_array=voice, audio_rate=16000) as w:
        w.write(np.zeros((4, 32, 32, 3), np.uint8))
    with VideoWriter(d / "silent_film.mp4") as w:
        w.write(np.zeros((5, 32, 32, 3), np.uint8))
    (d / "empty.wav").write_bytes(b"")
    (d / "corrupt.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + os.urandom(64))
    (d / "notes.mp3").write_text("this is not a recording\n")
    sf.write(d / "nosamples.wav", np.zeros(0, np.float32), 16000)
    sf.write(d / "silent.wav", np.zeros(16000, np.float32), 16000)
    sf.write(d / "subframe.wav", speech("a", 0.02, sr=16000), 16000)  # 20 ms < one 40 ms frame
    (d / "voices").mkdir()
    return d


@pytest.fixture(scope="module")
def checkpoints(tiny_models, tmp_path_factory):
    """Broken checkpoints made from the tiny kit's net.pth."""
    d = tmp_path_factory.mktemp("checkpoints")
    good = Path(tiny_models) / "emocast" / "net.pth"
    state = torch.load(good, map_location="cpu", weights_only=True)
    torch.save({"model.weight": torch.zeros(3, 3)}, d / "other.pth")
    (d / "download.pth").write_bytes(b"<html>404 Not Found</html>")
    (d / "half.pth").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    (d / "empty_folder").mkdir()

    class Payload:  # a pickle that would run a command when unpickled without weights_only
        def __reduce__(self):
            return (os.system, (f"touch {d / 'PWNED'}",))

    torch.save({"denoising_unet.conv_out.weight": Payload()}, d / "malicious.pth")
    (d / "nan").mkdir()
    state["denoising_unet.conv_out.weight"] = torch.full_like(state["denoising_unet.conv_out.weight"], float("nan"))
    torch.save(state, d / "nan" / "net.pth")
    return d


def _read_only_folder(monkeypatch, folder: Path) -> Path:
    """``folder`` made read-only: for real for a normal user; root ignores permissions, so there the file system's
    answer is simulated (EROFS for any file created inside it)."""
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return folder
    import tempfile

    real = tempfile.TemporaryFile

    def refuse(*args, dir=None, **kwargs):
        if dir is not None and Path(dir).resolve().is_relative_to(folder.resolve()):
            raise OSError(errno.EROFS, "Read-only file system", str(dir))
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    return folder


class _FullDisk:
    """An output container whose writes fail with ENOSPC (the disk filled up during the render)."""

    def __init__(self, container):
        self._container = container

    def __getattr__(self, name):
        return getattr(self._container, name)

    def mux(self, packet):
        raise OSError(errno.ENOSPC, "No space left on device")


@dataclass
class Case:
    id: str
    args: Callable  # (files, checkpoints, out) -> argv after the fixed ones
    code: int
    says: tuple = ()  # substrings of stderr (the message names the file or option)
    writes: tuple = ()  # files expected in the output folder afterwards
    patch: Callable | None = None  # (monkeypatch, files, out) -> None
    render: bool = True  # False: the common render flags are not added (config mistakes, help)
    check: Callable | None = field(default=None)  # (files, checkpoints, out, err) -> None


def single(image="portrait.png", audio="speech.wav", prompt="A person is talking with happy emotion.", *extra):
    return lambda f, c, out: ["--source_image", f / image, "--driving_audio", f / audio, "--prompt_emo", prompt,
                              "--outputs", out, *extra]


def manifest(name, text):
    def args(f, c, out):
        path = f / name
        path.write_bytes(text(f) if callable(text) else text)
        return ["--manifest", path, "--outputs", out]
    return args


def _frames(path) -> int:
    from emocast.media.video import count_frames

    return count_frames(path)


def _lower_pillow_limit(monkeypatch, f, out):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 30_000)  # the portrait has 57k: decoded at half size


def _lower_hard_limit(monkeypatch, f, out):
    import emocast.preprocess.image as image

    monkeypatch.setattr(image, "MAX_PIXELS", 50_000)  # the portrait has 57k pixels


def _disk_full(monkeypatch, f, out):
    import av

    real = av.open
    monkeypatch.setattr(av, "open", lambda path, mode="r", **kw: _FullDisk(real(path, mode, **kw))
                        if mode == "w" else real(path, mode, **kw))


def _stale_partial(monkeypatch, f, out):
    import socket

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    out.mkdir()  # a render killed with SIGKILL left its temporary file
    (out / f".portrait_speech.mp4.{int(dead.stdout)}.0badf00d.{socket.gethostname()}.partial").write_bytes(b"x" * 99)


def _read_only(monkeypatch, f, out):
    _read_only_folder(monkeypatch, out)


OK = "portrait_speech.mp4"
# image formats and sizes (rendered in one run), each with a different kind of prompt
FORMATS = ("rgba.png,speech.wav,A person is talking with happy emotion.\n"
           "gray16.png,speech.wav,\"A calm person, talking slowly, with commas\"\n"
           "cmyk.jpg,speech.wav," + "very " * 120 + "happy\n"  # over CLIP's 77 tokens: cut with a warning
           "photo.webp,speech.wav,\"Une personne parle, très heureuse 😊 — 非常に幸せ\"\n"
           "palette.gif,speech.wav,sad\n"
           "scan.tiff,speech.wav,angry\n"
           "rotated.jpg,speech.wav,surprised\n")
# audio formats (rendered in one run): M4A/AAC and a video's AAC track give 4 frames for 0.16 s, not 5
AUDIO = ("portrait.png,aac.m4a,calm\n"
         "portrait.png,lame.mp3,calm\n"
         "portrait.png,vorbis.ogg,calm\n"
         "portrait.png,stereo44k.flac,calm\n"
         "portrait.png,u8.wav,calm\n"
         "portrait.png,talking.mp4,calm\n")
LATIN1 = "portrait.png,speech.wav,A person is talking with happy emotion.\nportrait.png,speech.wav,Très heureux\n"
MIXED = ("portrait.png,speech.wav,one\n"                      # good
         "portrait.png,gone.wav,two\n"                        # missing file
         "truncated.png,speech.wav,three\n"                   # corrupt image
         "dark.png,speech.wav,four\n"                         # no face (found after loading)
         "portrait.jpg,speech.wav,\"five, open quote\n"        # quote never closed
         "portrait.jpg,speech.wav,six\n")                     # good (its default name collides with line 1's)

CASES = [
    # ---------------------------------------------------------------- images
    Case("image-missing", single("nowhere.png"), 2, ("source image not found", "nowhere.png")),
    Case("image-empty-file", single("empty.png"), 2, ("empty file", "empty.png")),
    Case("image-truncated-png", single("truncated.png"), 2, ("cannot read the source image", "truncated.png")),
    Case("image-text-file", single("notes.jpg"), 2, ("cannot read the source image", "notes.jpg")),
    Case("image-cut-jpeg", single("cut.jpg"), 2, ("cannot read the source image", "cut.jpg")),
    Case("image-is-a-folder", single("album.png"), 2, ("is a folder", "album.png", "--source_image")),
    Case("image-over-the-hard-limit", single(), 2, ("portrait.png", "megapixels", "Fix: downscale"),
         patch=_lower_hard_limit),
    Case("image-no-face", single("dark.png"), 2, ("no face found", "dark.png", "--allow_no_face")),
    Case("image-face-too-small", single("small.png"), 2, ("too small", "small.png")),
    Case("image-every-format-and-prompt", manifest("formats.csv", FORMATS.encode()), 0,
         writes=tuple(f"{Path(line.split(',')[0]).stem}_speech.mp4" for line in FORMATS.splitlines())),
    Case("image-over-pillows-pixel-limit", single(), 0, writes=(OK,), patch=_lower_pillow_limit),
    # ---------------------------------------------------------------- audio
    Case("audio-missing", single(audio="nowhere.wav"), 2, ("driving audio not found", "nowhere.wav")),
    Case("audio-empty-file", single(audio="empty.wav"), 2, ("empty file", "empty.wav")),
    Case("audio-corrupt-wav", single(audio="corrupt.wav"), 2, ("cannot decode the driving audio", "corrupt.wav")),
    Case("audio-text-file", single(audio="notes.mp3"), 2, ("cannot decode the driving audio", "notes.mp3")),
    Case("audio-is-a-folder", single(audio="voices"), 2, ("is a folder", "voices", "--driving_audio")),
    Case("audio-video-without-sound", single(audio="silent_film.mp4"), 2, ("has no audio stream", "silent_film.mp4")),
    Case("audio-no-samples", single(audio="nosamples.wav"), 2, ("contains no audio samples", "nosamples.wav")),
    Case("audio-silent", single(audio="silent.wav"), 2, ("is silent", "silent.wav")),
    Case("audio-shorter-than-a-frame", single(audio="subframe.wav"), 2, ("too short", "subframe.wav")),
    Case("audio-every-format", manifest("audio.csv", AUDIO.encode()), 0,
         writes=tuple(f"portrait_{Path(line.split(',')[1]).stem}.mp4" for line in AUDIO.splitlines()),
         check=lambda f, c, out, err: [_frames(out / name) for name in ("portrait_aac.mp4", "portrait_talking.mp4",
                                                                       "portrait_stereo44k.mp4")] == [4, 4, 4]),
    # ---------------------------------------------------------------- prompts
    Case("prompt-empty", single(prompt=""), 0, writes=(OK,)),  # a warning in the log; long/unicode: FORMATS
    # ---------------------------------------------------------------- checkpoints
    Case("checkpoint-missing", single("portrait.png", "speech.wav", "x", "--checkpoint", "gone/net.pth"), 2,
         ("checkpoint not found", "gone", "--checkpoint")),
    Case("checkpoint-folder-without-net-pth",
         lambda f, c, out: [*single()(f, c, out), "--checkpoint", c / "empty_folder"], 2,
         ("checkpoint not found", "empty_folder")),
    Case("checkpoint-of-another-model", lambda f, c, out: [*single()(f, c, out), "--checkpoint", c / "other.pth"],
         2, ("other.pth", "not an EmoCAST net.pth")),
    Case("checkpoint-html-page", lambda f, c, out: [*single()(f, c, out), "--checkpoint", c / "download.pth"],
         2, ("download.pth", "re-download")),
    Case("checkpoint-truncated", lambda f, c, out: [*single()(f, c, out), "--checkpoint", c / "half.pth"],
         2, ("half.pth",)),
    Case("checkpoint-malicious-pickle",
         lambda f, c, out: [*single()(f, c, out), "--checkpoint", c / "malicious.pth"], 2, ("malicious.pth",),
         check=lambda f, c, out, err: not (c / "PWNED").exists()),
    Case("checkpoint-with-nan-weights", lambda f, c, out: [*single()(f, c, out), "--checkpoint", c / "nan"], 2,
         ("NaN/inf", "nothing was written", OK)),
    # ---------------------------------------------------------------- output locations
    Case("output-is-a-folder", lambda f, c, out: [*single()(f, c, out), "--output", f / "album.png"], 2,
         ("is a folder", "album.png")),
    Case("output-under-a-file", lambda f, c, out: [*single()(f, c, out), "--output", f / "portrait.png" / "v.mp4"],
         2, ("is a file, not a folder", "portrait.png")),
    Case("output-is-the-audio", lambda f, c, out: [*single()(f, c, out), "--output", f / "speech.wav"], 2,
         ("one of the inputs", "speech.wav")),
    Case("output-folder-read-only", single(), 2, ("cannot write", "out", "Fix"), patch=_read_only),
    Case("output-disk-full", single(), 2, ("cannot write", OK, "disk is full"), patch=_disk_full),
    Case("output-stale-temporary-file-removed", single(), 0, writes=(OK,), patch=_stale_partial),
    # ---------------------------------------------------------------- manifests
    Case("manifest-missing", lambda f, c, out: ["--manifest", f / "nope.csv", "--outputs", out], 2,
         ("manifest not found", "nope.csv")),
    Case("manifest-unknown-format", manifest("jobs.txt", b"portrait.png,speech.wav,x\n"), 2,
         ("unknown format", "jobs.txt")),
    Case("manifest-without-rows", manifest("blank.csv", b"\n# nothing yet\n"), 2, ("has no rows", "blank.csv")),
    Case("manifest-latin-1", manifest("latin1.csv", LATIN1.encode("latin-1")), 2,
         ("latin1.csv, line 2 is not UTF-8", "Fix")),
    Case("manifest-utf8-bom-and-header",
         manifest("bom.csv", ("\ufeffimage,audio,prompt\nportrait.png,speech.wav,Très heureux\n").encode()), 0,
         writes=(OK,)),
    Case("manifest-open-quote-names-its-line-and-keeps-the-next-row",
         manifest("quote.csv", b'portrait.png,speech.wav,"happy\nportrait.jpg,speech.wav,sad\n'), 2,
         ("1 of 2 manifest rows failed", "line 1: a quote is not closed"), writes=(OK,)),
    Case("manifest-bad-rows-listed-good-rows-rendered", manifest("mixed.csv", MIXED.encode()), 2,
         ("4 of 6 manifest rows failed (2 videos written", "line 2: audio file not found", "gone.wav",
          "line 3: cannot read the source image", "truncated.png", "line 4 (dark.png, speech.wav): no face found",
          "line 5: a quote is not closed"), writes=("portrait_speech_row1.mp4", "portrait_speech_row6.mp4")),
    Case("manifest-fail-fast-stops-before-loading",
         lambda f, c, out: [*manifest("mixed.csv", MIXED.encode())(f, c, out), "--fail-fast"], 2,
         ("mixed.csv, line 2: audio file not found", "gone.wav")),
    Case("manifest-jsonl-bad-line",
         manifest("jobs.jsonl", b'{"image": "portrait.png", "audio": "speech.wav", "prompt": "calm"}\n{oops\n'), 2,
         ("1 of 2 manifest rows failed", "line 2: not valid JSON"), writes=(OK,)),
    Case("manifest-unquoted-comma-in-prompt",
         manifest("commas.csv", "portrait.png,speech.wav,Très heureux, vraiment\n".encode()), 2,
         ("1 of 1 manifest rows failed", "line 1: the output 'vraiment' is not an .mp4 file name", "in quotes")),
    Case("output-not-mp4", lambda f, c, out: [*single()(f, c, out), "--output", out / "clip.avi"], 2,
         ("clip.avi", "does not end in .mp4", "--output")),
    Case("manifest-rows-writing-one-file",
         manifest("clash.csv", b"portrait.png,speech.wav,a,same.mp4\nportrait.jpg,speech.wav,b,same.mp4\n"), 2,
         ("lines 1, 2 all write", "same.mp4")),
    Case("manifest-with-single-video-flags",
         lambda f, c, out: [*manifest("one.csv", b"portrait.png,speech.wav,x\n")(f, c, out), "--source_image",
                            f / "portrait.png"], 2, ("--source_image", "ignored with --manifest")),
    # ---------------------------------------------------------------- options
    Case("option-cfg-scale-inf", lambda f, c, out: [*single()(f, c, out), "--cfg_scale", "inf"], 2,
         ("cfg_scale must be a finite number",)),
    Case("option-cfg-scale-nan", lambda f, c, out: [*single()(f, c, out), "--cfg_scale", "nan"], 2,
         ("cfg_scale must be a finite number",)),
    Case("option-zero-steps", lambda f, c, out: [*single()(f, c, out), "--steps", "0"], 2,
         ("inference_steps must be at least 1",), render=False),
    Case("option-typo", lambda f, c, out: [*single()(f, c, out), "lip_wieght=0.2"], 2,
         ("did you mean 'lip_weight'",)),
    Case("option-wrong-type", lambda f, c, out: [*single()(f, c, out), "inference_steps=abc"], 2,
         ("inference_steps must be an integer",)),
    Case("option-epsilon-with-zero-snr-schedule", lambda f, c, out: [*single()(f, c, out),
                                                                   "schedule.prediction_type=epsilon"], 2,
         ("prediction_type=epsilon cannot be sampled with zero-terminal-SNR", "schedule.rescale_betas_zero_snr=false")),
    Case("option-fail-fast-without-manifest", lambda f, c, out: [*single()(f, c, out), "--fail-fast"], 2,
         ("--fail-fast", "--manifest")),
    Case("option-models-folder-missing", lambda f, c, out: [*single()(f, c, out), "--models", f / "no_models"], 2,
         ("missing pretrained models", "no_models", "download_models.py")),
]


def _listing(folder: Path) -> list[str]:
    """The files a run left in ``folder`` (a manifest run's render_report.json aside: tests/test_render_distributed.py)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.name != "render_report.json") \
        if folder.is_dir() else []


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(cli, capsys, monkeypatch, files, checkpoints, tiny_models, tmp_path, case):
    out = tmp_path / "out"
    if case.patch is not None:
        case.patch(monkeypatch, files, out)
    argv = [str(a) for a in case.args(files, checkpoints, out)]
    if "--models" not in argv:
        argv += ["--models", str(tiny_models)]
    argv += FAST if case.render else []
    code = run_main(cli.main, argv)
    captured = capsys.readouterr()
    err = captured.err
    assert code == case.code, err
    assert "Traceback" not in err
    for text in case.says:
        assert text in err, err
    if code:
        assert err.startswith("error: ") and err.count("error: ") == 1, err
    else:
        assert err == "", err
        assert captured.out.split() == [str(out / name) for name in case.writes]
    assert _listing(out) == sorted(case.writes)
    if case.check is not None:
        assert case.check(files, checkpoints, out, err)


def test_inference_sh_reads_relative_paths_from_the_callers_folder(files, tmp_path):
    """`bash /path/to/inference.sh --source_image me.png ...` from another folder: the paths are the caller's (the
    script used to change into the repository and then not find me.png); here the run gets as far as the model
    check of --models, also relative to the caller."""
    for name in ("portrait.png", "speech.wav"):
        shutil.copy(files / name, tmp_path / name)
    env = {k: v for k, v in os.environ.items() if k != "EMOCAST_MODELS"}
    run = subprocess.run(["bash", str(REPO / "inference.sh"), "--source_image", "portrait.png", "--driving_audio",
                          "speech.wav", "--prompt_emo", "happy", "--output", "renders/me.mp4", "--models", "mine",
                          *FAST], cwd=tmp_path, env={**env, "PYTHON": sys.executable}, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    assert "not found" not in run.stderr and "missing pretrained models" in run.stderr
    assert str(Path("mine") / "emocast") in run.stderr  # the models folder of the caller
    assert sorted(p.name for p in tmp_path.iterdir()) == ["portrait.png", "speech.wav"]


def test_sigterm_during_a_render_exits_143_and_leaves_nothing(cli, capsys, files, tiny_models, tmp_path):
    """A job scheduler stops a render (SIGTERM) while the video is being written: one line, exit 143, no
    temporary file left in the output folder (before: killed by the default action, `.partial` left forever).
    The signal is sent to this process by a watcher thread once the temporary file exists."""
    import threading

    sf.write(tmp_path / "long.wav", speech("Hello there, a long sentence to speak for a while.", 6.0, sr=16000), 16000)
    out = tmp_path / "out"
    sent = threading.Event()

    def watch():
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not sent.is_set():
            if out.is_dir() and any(p.name.endswith(".partial") for p in out.iterdir()):
                sent.set()
                os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.02)

    previous = signal.signal(signal.SIGTERM, lambda *a: None)  # a late signal must never reach pytest
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        code = run_main(cli.main, [str(a) for a in ["--source_image", files / "portrait.png", "--driving_audio",
                                                     tmp_path / "long.wav", "--prompt_emo", "calm", "--outputs", out,
                                                     "--models", tiny_models, *FAST]])
    finally:
        sent.set()
        watcher.join()
        signal.signal(signal.SIGTERM, previous)
    captured = capsys.readouterr()
    assert code == 143, captured.err
    assert captured.err == "terminated (SIGTERM) before finishing; run the same command again to redo what was not " \
                           "finished\n"
    assert captured.out == "" and list(out.iterdir()) == []
