"""Speaker diarization: pyannote.audio 4 on debug (tiny, random) models and the sample corpus'
real audio; the release layout of community-1 is rebuilt from debug weights and read back, by
our loader with the network blocked and by pyannote's own loader; the DiariZen backend.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from omni_core.errors import OmniError, WeightsError
from omni_core.media import load_audio
from omni_core.models.diarizer import Diarizer, Turn
from omni_core.weights import load_registry

ENTRY = Diarizer.weights_entry


@pytest.fixture(scope="module")
def diarizer() -> Diarizer:
    return Diarizer.debug(0)


@pytest.fixture(scope="module")
def clip(sample_corpus) -> np.ndarray:
    """A 3-person talking clip of the corpus, decoded at 16 kHz mono."""
    return load_audio(sample_corpus.out / "talking" / "talk04_3p.mp4", 16000)


@pytest.fixture(scope="module")
def release(diarizer, tmp_path_factory) -> Path:
    """A weights root whose community-1 folder is the debug pipeline in the release layout."""
    root = tmp_path_factory.mktemp("weights")
    diarizer.save_pretrained(root / ENTRY)
    return root


@pytest.fixture
def no_network(monkeypatch):
    """Every TCP connect attempt is recorded and refused."""
    attempts: list[tuple] = []

    def refuse(self, address, *args):
        attempts.append(address)
        raise OSError(f"network blocked in this test: {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return attempts


def assert_well_formed(turns: list[Turn], duration: float, *, exclusive: bool) -> None:
    assert all(isinstance(t, Turn) and isinstance(t.speaker, str) and t.speaker for t in turns)
    assert all(0.0 <= t.start_s < t.end_s <= duration + 1e-9 for t in turns)
    assert [t.start_s for t in turns] == sorted(t.start_s for t in turns)
    if exclusive:
        assert all(a.end_s <= b.start_s + 1e-9 for a, b in zip(turns, turns[1:], strict=False))



# --------------------------------------------------------------------------------------------
# diarization on debug models


def test_debug_diarizer_on_the_real_recording(diarizer, sample_corpus):
    wav = load_audio(sample_corpus.out / "recording" / "sample.wav", 16000)
    duration = len(wav) / 16000
    turns = diarizer.diarize(wav)
    assert turns, "the recording is speech from 6.7 s to 30 s; a debug pipeline still finds some"
    assert_well_formed(turns, duration, exclusive=True)
    assert diarizer.describe().startswith("debug weights")


def test_debug_diarizer_on_a_talking_clip_is_deterministic(diarizer, clip):
    duration = len(clip) / 16000
    turns = diarizer.diarize(clip)
    assert turns
    assert_well_formed(turns, duration, exclusive=True)
    # pyannote pads the last 10 s window past the 8 s clip: nothing may end after the clip
    assert max(t.end_s for t in turns) <= duration
    overlapping = diarizer.diarize(clip, exclusive=False)
    assert_well_formed(overlapping, duration, exclusive=False)
    # the exclusive turns are the overlapping ones with overlaps resolved: never more speech
    assert sum(t.duration_s for t in turns) <= sum(t.duration_s for t in overlapping) + 1e-6
    assert Diarizer.debug(0).diarize(clip) == turns
    stereo = np.stack([clip, clip], axis=1)
    assert diarizer.diarize(stereo, num_speakers=1) == diarizer.diarize(clip, num_speakers=1)
    other = Diarizer.debug(1).pipeline._segmentation.model.state_dict()
    mine = diarizer.pipeline._segmentation.model.state_dict()
    assert any(not torch.equal(other[k], mine[k]) for k in mine)


def test_empty_and_tiny_inputs_give_no_or_well_formed_turns(diarizer):
    assert diarizer.diarize(np.zeros(0, np.float32)) == []
    assert diarizer.diarize(np.zeros(100, np.float32)) == []
    noise = (0.1 * np.random.default_rng(0).standard_normal(8000)).astype(np.float32)
    assert_well_formed(diarizer.diarize(noise), 0.5, exclusive=True)


# --------------------------------------------------------------------------------------------
# from_pretrained: the release layout, offline and safe


def test_from_pretrained_on_an_empty_folder_names_the_missing_file(tmp_path):
    with pytest.raises(WeightsError) as err:
        Diarizer.from_pretrained(tmp_path)
    msg = str(err.value)
    assert "\n" not in msg
    assert f"{ENTRY}/config.yaml" in msg and f"omni weights fetch {ENTRY}" in msg


def test_save_pretrained_writes_exactly_the_release_files(release):
    folder = release / ENTRY
    written = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert written == sorted(f.path for f in load_registry().get(ENTRY).files)
    config = yaml.safe_load((folder / "config.yaml").read_text())
    assert config["pipeline"]["name"] == "pyannote.audio.pipelines.SpeakerDiarization"
    assert config["pipeline"]["params"]["segmentation"] == "$model/segmentation"
    assert config["params"]["clustering"] == {"threshold": 0.6, "Fa": 0.07, "Fb": 0.8}


def test_from_pretrained_loads_the_release_layout_with_the_network_blocked(
        release, diarizer, clip, no_network):
    loaded = Diarizer.from_pretrained(release)
    assert loaded.describe() == f"{ENTRY} from {release / ENTRY}"
    assert loaded.diarize(clip) == diarizer.diarize(clip)
    from pyannote.audio.telemetry.metrics import provider

    provider.force_flush()  # any usage report pyannote queued would try to connect now
    assert no_network == []
    assert os.environ["PYANNOTE_METRICS_ENABLED"] == "false"


def test_pyannote_own_loader_reads_the_same_folder(release, diarizer, clip):
    """Our layout is the release layout: upstream's Pipeline.from_pretrained agrees."""
    from pyannote.audio import Pipeline

    upstream = Pipeline.from_pretrained(release / ENTRY)
    assert upstream.parameters(instantiated=True) == diarizer.pipeline.parameters(
        instantiated=True)
    assert Diarizer(upstream).diarize(clip) == diarizer.diarize(clip)


def _copy_release(release: Path, root: Path) -> Path:
    shutil.copytree(release / ENTRY, root / ENTRY)
    return root / ENTRY


def test_a_checkpoint_that_pickles_code_is_refused(release, tmp_path):
    folder = _copy_release(release, tmp_path)
    ckpt = folder / "embedding" / "pytorch_model.bin"
    torch.save({"state_dict": {}, "extra": argparse.Namespace(x=1)}, ckpt)
    with pytest.raises(WeightsError, match=r"safely .*argparse\.Namespace"):
        Diarizer.from_pretrained(tmp_path)


def test_hub_ids_in_the_config_resolve_to_registry_entries_or_fail_clearly(release, tmp_path,
                                                                          clip, diarizer,
                                                                          no_network):
    folder = _copy_release(release, tmp_path)
    wespeaker = tmp_path / "pyannote-wespeaker-voxceleb-resnet34-lm"
    wespeaker.mkdir()
    # the registry entry holds the real checkpoint; the release folder's copy is garbage, so
    # loading only works if the hub id is resolved to the entry
    (folder / "embedding" / "pytorch_model.bin").rename(wespeaker / "pytorch_model.bin")
    (folder / "embedding" / "pytorch_model.bin").write_bytes(b"not a checkpoint")
    config = yaml.safe_load((folder / "config.yaml").read_text())
    config["pipeline"]["params"]["embedding"] = "pyannote/wespeaker-voxceleb-resnet34-LM"
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    assert Diarizer.from_pretrained(tmp_path).diarize(clip) == diarizer.diarize(clip)

    config["pipeline"]["params"]["segmentation"] = "pyannote/segmentation-3.0"
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(WeightsError, match="omni weights fetch pyannote-segmentation-3.0"):
        Diarizer.from_pretrained(tmp_path)
    config["pipeline"]["params"]["segmentation"] = "someone/private-model"
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(WeightsError, match="someone/private-model.*hub is never asked"):
        Diarizer.from_pretrained(tmp_path)
    assert no_network == []


# --------------------------------------------------------------------------------------------
# the optional DiariZen backend


def test_diarizen_backend_without_the_package_says_how_to_install_it(tmp_path):
    if importlib.util.find_spec("diarizen") is not None:
        pytest.skip("DiariZen is installed here")
    for build in (lambda: Diarizer.debug(0, backend="diarizen"),
                  lambda: Diarizer.from_pretrained(tmp_path, backend="diarizen")):
        with pytest.raises(OmniError) as err:
            build()
        msg = str(err.value)
        assert "github.com/BUTSpeechFIT/DiariZen" in msg and "pip install -e ." in msg
    with pytest.raises(OmniError, match="unknown diarization backend 'nemo'"):
        Diarizer.debug(0, backend="nemo")
