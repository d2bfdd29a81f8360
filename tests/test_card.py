"""The checkpoint card (net.json): what inference samples a checkpoint with, and exports written as one unit."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from emocast import config
from emocast.errors import CheckpointError
from emocast.pipelines.card import RELEASE_CARD, CheckpointCard, parse_card, read_card, resolve
from emocast.pipelines.config import InferenceConfig
from emocast.pipelines.inference import resolve_sampling
from emocast.training import checkpointing

REPO = Path(__file__).resolve().parents[1]


def test_a_checkpoint_without_card_samples_as_the_release(tmp_path):
    (tmp_path / "net.pth").write_bytes(b"")
    card, found = read_card(tmp_path / "net.pth")
    assert not found and card == RELEASE_CARD
    s = resolve_sampling(config.load(InferenceConfig), card, found)
    assert (s.settings.clip_length, s.settings.motion_frames, s.settings.reference_pairing) == (16, 2, "release")
    assert s.settings.schedule.prediction_type == "v_prediction" and s.settings.schedule.rescale_betas_zero_snr
    assert s.image_size is None  # the release's resolution comes from the SD UNet config (64 x 8 = 512)


def test_the_card_drives_sampling_and_a_contradicting_flag_wins_with_one_warning(tmp_path, caplog):
    card = CheckpointCard(image_size=128, clip_length=6, motion_frames=1, reference_pairing="matched",
                          schedule=RELEASE_CARD.schedule.replace(prediction_type="epsilon", beta_schedule="scaled_linear",
                                                                 rescale_betas_zero_snr=False))
    card.write(tmp_path)
    got, found = read_card(tmp_path / "net.pth")
    assert found and got == card
    s = resolve_sampling(config.load(InferenceConfig), got, found)
    assert (s.image_size, s.settings.clip_length, s.settings.motion_frames) == (128, 6, 1)
    assert s.settings.reference_pairing == "matched" and s.settings.schedule.prediction_type == "epsilon"
    assert not caplog.records
    with caplog.at_level("WARNING"):
        s = resolve_sampling(config.load(InferenceConfig, (), ["data.size=256", "schedule.prediction_type=v_prediction",
                                                              "data.n_motion_frames=1"]), got, found)
    assert s.image_size == 256 and s.settings.schedule.prediction_type == "v_prediction"
    assert s.settings.schedule.beta_schedule == "scaled_linear"  # not overridden: still the card's
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 2 and all("\n" not in w for w in warned)  # n_motion_frames=1 agrees with the card
    assert any("image_size=256 overrides the checkpoint card (image_size=128)" in w for w in warned)


def test_legacy_and_broken_cards(tmp_path):
    legacy = parse_card({"producer": "emocast.training", "task": "stage1", "step": 3, "reference_pairing": "matched"})
    assert legacy.reference_pairing == "matched" and legacy.image_size == RELEASE_CARD.image_size
    with pytest.raises(CheckpointError, match="reference_pairing must be release or matched"):
        parse_card({"reference_pairing": "sideways"})
    bad = dict(json.loads(CheckpointCard().to_json()), image_size="big")
    with pytest.raises(CheckpointError, match="image_size must be an integer"):
        parse_card(bad)
    future = dict(json.loads(CheckpointCard().to_json()), version=99)
    with pytest.raises(CheckpointError, match="version-99 card"):
        parse_card(future)
    (tmp_path / "net.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="cannot read the checkpoint card"):
        read_card(tmp_path / "net.pth")
    assert resolve(RELEASE_CARD, {"clip_length": "auto"}, False) == {"clip_length": 16}


def _export(final, value: float):
    net = torch.nn.Linear(2, 2)
    with torch.no_grad():
        net.weight.fill_(value)
    card = CheckpointCard(provenance={"step": int(value)})
    return checkpointing.export_weights(net, final, card, safetensors=True)


def _state(final):
    sd = torch.load(final / "net.pth", map_location="cpu", weights_only=True)
    card, found = read_card(final)
    return float(sd["weight"][0, 0]), card.provenance["step"], found


KILL = textwrap.dedent("""
    import os, signal, sys, torch
    sys.path.insert(0, {repo!r})
    from emocast.pipelines import card as card_mod
    from emocast.training import checkpointing
    from emocast import atomic
    where = sys.argv[2]
    def die(*a, **k):
        os.kill(os.getpid(), signal.SIGKILL)
    if where == "card":  # after the weights, before the card
        card_mod.CheckpointCard.write = die
    elif where == "swap":  # between the two renames of the fallback swap
        atomic._exchange = lambda a, b: False
        real = os.rename
        calls = []
        def rename(a, b):
            calls.append(a)
            if len(calls) == 2:
                die()
            real(a, b)
        atomic.os.rename = rename
    net = torch.nn.Linear(2, 2)
    with torch.no_grad():
        net.weight.fill_(2.0)
    checkpointing.export_weights(net, sys.argv[1], card_mod.CheckpointCard(provenance={{"step": 2}}))
""")


@pytest.mark.parametrize("where", ["card", "swap"])
def test_a_killed_export_leaves_the_previous_one_whole(tmp_path, where):
    final = tmp_path / "final"
    _export(final, 1.0)
    script = tmp_path / "kill.py"
    script.write_text(KILL.format(repo=str(REPO)))
    proc = subprocess.run([sys.executable, str(script), str(final), where], capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    if where == "swap":  # the old export was renamed aside: the next export (or recover_dir) puts it back
        assert not final.exists()
        from emocast.atomic import recover_dir

        recover_dir(final)
    assert _state(final) == (1.0, 1, True)  # the previous export, weights and card together
    _export(final, 3.0)  # the next export cleans what the killed one left
    assert _state(final) == (3.0, 3, True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final", "kill.py"]
    assert sorted(p.name for p in final.iterdir()) == ["net.json", "net.pth", "net.safetensors"]


def test_export_refuses_a_folder_of_other_files(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(CheckpointError, match="not an EmoCAST export"):
        _export(tmp_path, 1.0)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_epsilon_with_zero_terminal_snr_is_refused_everywhere(tmp_path):
    """At the zero-SNR schedule's last timestep an epsilon prediction cannot give x0 (division by sqrt(0)): the
    training config, a card and an inference override each refuse it with one message."""
    from emocast.errors import ConfigError
    from emocast.training.config import Stage2Config

    with pytest.raises(ConfigError, match="zero-terminal-SNR betas.*noise.zero_snr=false"):
        config.load(Stage2Config, (), ["noise.prediction_type=epsilon"])
    bad = json.loads(CheckpointCard().to_json())
    bad["schedule"]["prediction_type"] = "epsilon"
    with pytest.raises(CheckpointError, match="zero-terminal-SNR betas"):
        parse_card(bad)
    with pytest.raises(ConfigError, match="zero-terminal-SNR betas.*schedule.rescale_betas_zero_snr=false"):
        resolve_sampling(config.load(InferenceConfig, (), ["schedule.prediction_type=epsilon"]), RELEASE_CARD, False)
