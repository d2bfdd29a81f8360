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


def test_output_names_never_collide(files):
    """Same image+audio with two prompts, and equal stems from two folders, get _row<line>; explicit clashes,
    a folder as output and an output that is an input are errors before anything renders."""
    from emocast.pipelines.batch import output_paths

    (files / "img" / "b.jpg").write_bytes(b"x")
    m = files / "jobs.csv"
    m.write_text("b.jpg,s1.wav,happy\nb.jpg,s1.wav,sad\nimg/b.jpg,s1.wav,calm\nb.jpg,s2.wav,calm\n"
                 "img/a.png,s2.wav,x,out/b_s1.mp4\n")
    outs = files / "outputs"
    assert output_paths(read_manifest(m), outs) == [outs / "b_s1_row1.mp4", outs / "b_s1_row2.mp4",
                                                    outs / "b_s1_row3.mp4", outs / "b_s2.mp4", files / "out/b_s1.mp4"]
    m.write_text("b.jpg,s1.wav,happy,x.mp4\nb.jpg,s2.wav,sad\nimg/a.png,s1.wav,calm,x.mp4\n")
    with pytest.raises(InputError, match=r"lines 1, 3 all write .*x\.mp4"):
        output_paths(read_manifest(m), outs)
    (files / "talk.mp4").write_bytes(b"x")  # a video's sound track as the driving audio
    m.write_text("b.jpg,talk.mp4,happy,talk.mp4\n")
    with pytest.raises(InputError, match="one of the inputs"):
        output_paths(read_manifest(m), outs)
    (outs / "b_s1.mp4").mkdir(parents=True)
    m.write_text("b.jpg,s1.wav,happy\n")
    with pytest.raises(InputError, match="is a folder"):
        output_paths(read_manifest(m), outs)
    with pytest.raises(InputError, match="b.jpg is a file, not a folder"):
        output_paths(read_manifest(m), files / "b.jpg" / "sub")


class _FakePipe:
    """Stands in for EmoCASTPipeline: 'writes' a file, or fails for chosen images."""

    def __init__(self, failures):
        self.failures = failures

    def render(self, image, audio, prompt, out, progress=True):
        if image.name in self.failures:
            raise self.failures[image.name]
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(prompt)
        return out


def test_failing_rows_are_reported_the_rest_rendered(files, caplog):
    from emocast.pipelines.inference import render_jobs

    (files / "c.png").write_bytes(b"x")
    m = files / "jobs.csv"
    m.write_text("img/a.png,s1.wav,one\nb.jpg,s1.wav,two\nc.png,s1.wav,three\nb.jpg,s1.wav,four\n")
    pipe = _FakePipe({"a.png": InputError("no face found in a.png"), "c.png": RuntimeError("CUDA out of memory")})
    printed = []
    with pytest.raises(InputError) as err:
        render_jobs(pipe, read_manifest(m), files / "outs", progress=False, on_written=printed.append)
    msg = str(err.value)
    assert "2 of 4 manifest rows failed (2 videos written" in msg
    assert "line 1 (a.png, s1.wav): no face found" in msg and "line 3 (c.png, s1.wav): RuntimeError: CUDA out" in msg
    assert printed == [files / "outs/b_s1_row2.mp4", files / "outs/b_s1_row4.mp4"]  # no overwrite
    assert [p.read_text() for p in printed] == ["two", "four"]
    assert "Traceback" in caplog.text  # the unexpected error keeps its traceback in the log
    (single,) = read_manifest(m)[:1]
    with pytest.raises(InputError, match="no face"):  # one video: the error itself
        render_jobs(pipe, [single], files / "outs", progress=False)


def test_an_open_quote_is_its_rows_problem_and_never_swallows_the_next_row(files):
    """A quote left open used to run on into the next line, merging two rows into one prompt (one video instead
    of two, exit 0): each line is one row, and the open quote is named with its line."""
    from emocast.pipelines.batch import parse_manifest

    m = files / "jobs.csv"
    m.write_text('b.jpg,s1.wav,"happy\nb.jpg,s2.wav,sad\nb.jpg,s1.wav,"calm, "quoted" twice"\n')
    manifest = parse_manifest(m)
    assert [(j.row, j.prompt) for j in manifest.jobs] == [(2, "sad")]
    assert [p.row for p in manifest.problems] == [1, 3]
    assert all("a quote is not closed" in p.reason for p in manifest.problems)
    with pytest.raises(InputError, match="jobs.csv, line 1: a quote is not closed"):
        read_manifest(m)


@pytest.mark.parametrize("name", ["jobs.csv", "jobs.jsonl"])
def test_manifest_encoding_utf8_with_or_without_bom_else_the_line_is_named(files, name):
    rows = ['b.jpg,s1.wav,happy', 'b.jpg,s2.wav,très heureux'] if name.endswith(".csv") else \
        [json.dumps({"image": "b.jpg", "audio": "s1.wav", "prompt": "happy"}, ensure_ascii=False),
         json.dumps({"image": "b.jpg", "audio": "s2.wav", "prompt": "très heureux"}, ensure_ascii=False)]
    text = "\n".join(rows) + "\n"
    m = files / name
    for data in (text.encode(), "\ufeff".encode() + text.encode()):  # UTF-8, and UTF-8 with a BOM (Excel)
        m.write_bytes(data)
        assert [j.prompt for j in read_manifest(m)] == ["happy", "très heureux"]
    m.write_bytes(text.encode("latin-1"))
    with pytest.raises(InputError, match=rf"{name}, line 2 is not UTF-8 text \(byte 0xe8"):
        read_manifest(m)


def test_bad_rows_are_listed_with_the_render_failures_and_fail_fast_stops(files):
    """Rows found bad before rendering (``skipped``) and rows that fail while rendering end in one list, in line
    order; with ``fail_fast`` the first failure ends the batch."""
    from emocast.pipelines.batch import RowProblem
    from emocast.pipelines.inference import render_jobs

    m = files / "jobs.csv"
    m.write_text("img/a.png,s1.wav,one\nb.jpg,s1.wav,two\nb.jpg,s2.wav,three\n")
    pipe = _FakePipe({"a.png": InputError("no face found in a.png")})
    skipped = [RowProblem(4, "cannot read the source image c.png")]
    with pytest.raises(InputError) as err:
        render_jobs(pipe, read_manifest(m), files / "outs", progress=False, skipped=skipped)
    lines = str(err.value).splitlines()
    assert lines[0].startswith("2 of 4 manifest rows failed (2 videos written")
    assert lines[1:] == ["  line 1 (a.png, s1.wav): no face found in a.png", "  line 4: cannot read the source image c.png"]
    with pytest.raises(InputError) as err:
        render_jobs(pipe, read_manifest(m), files / "fast", progress=False, fail_fast=True)
    assert "1 of 3 manifest rows failed (0 videos written)" in str(err.value) and "--fail-fast" in str(err.value)
    assert not (files / "fast").exists()
