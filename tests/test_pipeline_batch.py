import json

import pytest

from emocast.errors import InputError
from emocast.pipelines.batch import default_output_name, output_path, read_manifest


@pytest.fixture
def files(tmp_path):
    (tmp_path / "img").mkdir()
    for name in ("img/a.png", "b.jpg", "s1.wav", "s2.wav"):
        (tmp_path / name).write_bytes(b"x")
    return tmp_path


def test_csv_without_header_relative_to_manifest(files):
    m = files / "jobs.csv"
    m.write_text('img/a.png,s1.wav,"happy, very happy"\n\n# comment\nb.jpg,s2.wav,sad,out/x.mp4\n')
    jobs = read_manifest(m)
    assert [j.image for j in jobs] == [files / "img/a.png", files / "b.jpg"]
    assert jobs[0].prompt == "happy, very happy" and jobs[0].output is None
    assert jobs[1].output == files / "out/x.mp4" and jobs[1].row == 4
    assert output_path(jobs[0], files / "outputs") == files / "outputs" / "a_s1.mp4"


def test_csv_header_any_order(files):
    m = files / "jobs.csv"
    m.write_text("prompt,audio,image\nangry,s1.wav,b.jpg\n")
    (job,) = read_manifest(m)
    assert job.image == files / "b.jpg" and job.audio == files / "s1.wav" and job.prompt == "angry"


def test_jsonl(files):
    m = files / "jobs.jsonl"
    m.write_text(json.dumps({"image": "b.jpg", "audio": str(files / "s1.wav"), "prompt": "calm"}) + "\n")
    (job,) = read_manifest(m)
    assert job.audio == files / "s1.wav" and job.output is None


@pytest.mark.parametrize("content,match", [
    ("b.jpg,s1.wav\n", "line 1: expected the columns"),
    ("b.jpg,missing.wav,sad\n", "line 1: audio file not found"),
    ("b.jpg,s1.wav, \n", "line 1: missing prompt"),
    ("", "has no rows"),
])
def test_csv_errors_name_the_line(files, content, match):
    m = files / "jobs.csv"
    m.write_text(content)
    with pytest.raises(InputError, match=match):
        read_manifest(m)


def test_jsonl_errors(files):
    m = files / "jobs.jsonl"
    m.write_text('{"image": "b.jpg", "audio": "s1.wav", "prompt": "x"}\n{oops\n')
    with pytest.raises(InputError, match="line 2: not valid JSON"):
        read_manifest(m)
    m.write_text('{"image": "b.jpg", "audio": "s1.wav", "prompt": "x", "seed": 3}\n')
    with pytest.raises(InputError, match="unknown field"):
        read_manifest(m)


def test_missing_manifest_and_format(tmp_path):
    with pytest.raises(InputError, match="manifest not found"):
        read_manifest(tmp_path / "nope.csv")
    (tmp_path / "x.txt").write_text("a")
    with pytest.raises(InputError, match="unknown format"):
        read_manifest(tmp_path / "x.txt")


def test_default_name():
    assert default_output_name("dir/face.v2.png", "x/speech.wav") == "face.v2_speech.mp4"
