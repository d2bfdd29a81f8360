"""Data preparation and evaluation faults end in a right result: a failure report cut by a kill, videos where the
face detector (almost) never fires."""
from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from emocast.data import prep_run


def test_a_report_line_cut_by_a_kill_never_swallows_the_next_entry(tmp_path, caplog):
    """A kill while an entry was written leaves a line without its end; the next entry starts on a new line (it
    used to be glued to the cut one, so that video was lost from the report and prepared again), and the cut line
    is ignored with a warning naming it."""
    report = prep_run.report_path(tmp_path, 0)
    report.parent.mkdir(parents=True)
    first = {"video": "a.mp4", "video_id": "a", "reason": "no_face", "message": "no face", "time": 1.0}
    report.write_text(json.dumps(first) + "\n" + '{"video": "b.mp4", "video_id": "b", "rea')
    prep_run._append(report, {"video": "c.mp4", "video_id": "c", "reason": "too_short", "message": "short",
                              "time": 3.0})
    with caplog.at_level(logging.WARNING, logger="emocast.data"):
        failures = prep_run.read_failures(tmp_path)
    assert sorted(failures) == ["a", "c"] and failures["c"]["reason"] == "too_short"
    assert f"{report}, line 2: not a complete entry" in caplog.text
    assert report.read_text().endswith('"time": 3.0}\n') and report.read_text().count("\n") == 3
