"""Stage 2 of in-pair curation: diarization, transcription, word attribution, enhancement.

Real pyannote.audio 4 and openai-whisper code on debug (tiny, random) models and the sample
corpus' real audio; the release layout of community-1 is rebuilt from debug weights and read
back, by our loader with the network blocked and by pyannote's own loader.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from omni_core.errors import OmniError, WeightsError
from omni_core.media import load_audio
from omni_core.weights import load_registry
from pipelines.inpair.audio import (
    AudioModels,
    Diarizer,
    Enhancer,
    Segment,
    Turn,
    Word,
    attribute_words,
    transcribe,
)

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
# attribute_words: by hand


def w(text: str, start: float, end: float, p: float = 0.5) -> Word:
    return Word(text, start, end, p)


def test_each_word_goes_to_the_turn_it_overlaps_most():
    turns = [Turn("A", 0.0, 2.0), Turn("B", 2.0, 4.0)]
    words = [w(" hello", 0.2, 0.6), w(" there", 1.5, 2.8), w(" bye", 1.2, 2.3, 0.9)]
    segs = attribute_words(words, turns)
    assert [(s.speaker, s.text) for s in segs] == [("A", "hello bye"), ("B", "there")]
    assert segs[0].words == (words[0], words[2])  # in time order
    assert segs[0].confidence == pytest.approx(0.7)
    assert (segs[1].start_s, segs[1].end_s) == (2.0, 4.0)  # overlap never widens a turn
    assert segs.dropped == ()


def test_ties_go_to_the_earlier_turn_and_point_words_count_as_inside():
    turns = [Turn("B", 2.0, 4.0), Turn("A", 0.0, 2.0)]  # unsorted on purpose
    words = [w(" tie", 1.5, 2.5), w(" point", 3.0, 3.0), w(" edge", 2.0, 2.0)]
    segs = attribute_words(words, turns)
    assert [s.speaker for s in segs] == ["A", "B"]
    assert segs[0].text == "tie edge"
    assert segs[1].text == "point"


def test_words_in_gaps_join_the_nearest_turn_within_max_gap_or_are_dropped():
    turns = [Turn("A", 0.0, 1.0), Turn("B", 3.0, 4.0)]
    words = [w(" near", 1.2, 1.4), w(" far", 1.8, 2.1), w(" mid", 1.75, 2.25),
             w(" late", 4.3, 4.5), w(" gone", 6.0, 6.5)]
    segs = attribute_words(words, turns, max_gap_s=0.8)
    a, b = segs
    assert a.text == "near mid far"  # "mid": 0.75 s from both turns -> the earlier
    assert (a.start_s, a.end_s) == (0.0, 2.25)  # widened to cover the gap words
    assert b.text == "late" and (b.start_s, b.end_s) == (3.0, 4.5)
    assert [x.text for x in segs.dropped] == [" gone"]
    strict = attribute_words(words, turns, max_gap_s=0.0)
    assert [s.text for s in strict] == ["", ""] and len(strict.dropped) == 5


def test_consecutive_turns_of_one_speaker_stay_separate():
    turns = [Turn("A", 0.0, 1.0), Turn("A", 1.0, 2.0), Turn("B", 2.5, 3.0)]
    words = [w(" one", 0.1, 0.5), w(" two", 1.1, 1.5)]
    segs = attribute_words(words, turns)
    assert [(s.speaker, s.start_s, s.end_s, s.text) for s in segs] == [
        ("A", 0.0, 1.0, "one"), ("A", 1.0, 2.0, "two"), ("B", 2.5, 3.0, "")]
    assert segs[2].confidence is None
    assert [s.speaker for s in attribute_words(words, turns, keep_empty=False)] == ["A", "A"]


def test_empty_inputs():
    assert attribute_words([], []) == [] and attribute_words([], []).dropped == ()
    lonely = [w(" hi", 0.0, 0.3)]
    assert attribute_words(lonely, []) == [] and attribute_words(lonely, []).dropped == (
        lonely[0],)
    segs = attribute_words([], [Turn("A", 0.0, 1.0)])
    assert segs == [Segment("A", 0.0, 1.0, "", ())]
    with pytest.raises(OmniError, match="max_gap_s"):
        attribute_words(lonely, [], max_gap_s=-1.0)


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
# optional backends


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


def test_enhancer_disabled_is_the_identity_and_enabled_needs_clearvoice(clip):
    off = Enhancer()
    assert not off.enabled
    out = off(clip, 16000)
    assert out.dtype == np.float32 and np.array_equal(out, clip)
    assert np.array_equal(off(np.stack([clip, clip], axis=1)), clip)
    with pytest.raises(OmniError, match="unknown ClearerVoice enhancement model"):
        Enhancer(enabled=True, model="NoSuchModel")


def test_enhancer_loads_through_the_weights_registry_and_never_downloads(tmp_path, monkeypatch):
    import os

    from omni_core.errors import WeightsError
    from pipelines.inpair.audio import _clearvoice_home, clearvoice_entry

    entry = clearvoice_entry("MossFormerGAN_SE_16K")
    assert entry == "clearvoice-mossformergan-se-16k"
    for weights in (None, "debug", "random"):  # no debug twin: refused, with the way out
        with pytest.raises(OmniError, match="no debug twin") as err:
            Enhancer(enabled=True, weights=weights)
        assert "audio.enhance: false" in str(err.value)
    # a weights folder without the checkpoint: one line naming the file and the fetch command
    with pytest.raises(WeightsError) as err:
        Enhancer(enabled=True, weights=tmp_path)
    assert "last_best_checkpoint" in str(err.value)
    assert f"omni weights fetch {entry}" in str(err.value)
    # the checkpoint present: next comes the package, one line saying how to install it
    folder = tmp_path / entry
    folder.mkdir()
    (folder / "last_best_checkpoint").write_text("last_best_checkpoint.pt\n")
    (folder / "last_best_checkpoint.pt").write_bytes(b"weights")
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "clearvoice", None)  # import clearvoice -> ImportError
        with pytest.raises(OmniError, match="pip install clearvoice"):
            Enhancer(enabled=True, weights=tmp_path)
    # where ClearerVoice looks: checkpoints/<model> under the working directory, hub offline
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    cwd = os.getcwd()
    with _clearvoice_home("MossFormerGAN_SE_16K", folder):
        assert os.getcwd() != cwd and os.environ["HF_HUB_OFFLINE"] == "1"
        seen = Path("checkpoints/MossFormerGAN_SE_16K/last_best_checkpoint").read_text()
        assert seen == "last_best_checkpoint.pt\n"
    assert os.getcwd() == cwd and os.environ["HF_HUB_OFFLINE"] == "0"


def test_enhancer_runs_clearvoices_network_from_the_weights_folder(tmp_path, clip, monkeypatch):
    """The real upstream path: ClearVoice builds MossFormerGAN_SE_16K, loads our checkpoint
    from the registry folder (never the hub) and enhances through its file interface."""
    from conftest import mossformergan_checkpoint

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # the enhancer itself must turn the hub off
    folder = mossformergan_checkpoint(tmp_path)
    enh = Enhancer(enabled=True, weights=tmp_path)
    net = enh._model.models[0].model
    saved = torch.load(folder / "last_best_checkpoint.pt", weights_only=True)["model"]
    assert set(net.state_dict()) == set(saved)
    assert all(torch.equal(v, saved[k]) for k, v in net.state_dict().items())
    x = clip[: 2 * 16000]
    y = enh(x, 16000)
    assert y.dtype == np.float32 and y.shape == x.shape and np.isfinite(y).all()
    assert not np.allclose(y, x, atol=1e-3)  # the network, not a pass-through
    y8 = enh(x[::2].copy(), 8000)  # resampled to 16 kHz and back: same length out
    assert y8.shape == (16000,) and np.isfinite(y8).all()
    assert np.array_equal(enh(x, 16000), y)  # deterministic

    # a checkpoint that leaves tensors at random init is refused, not silently used
    with pytest.raises(OmniError, match="does not match MossFormerGAN_SE_16K: 3 tensors"):
        Enhancer(enabled=True, weights=mossformergan_checkpoint(tmp_path / "bad", drop=3)
                 .parent)


# --------------------------------------------------------------------------------------------
# transcription and the whole stage


def test_the_stage_on_a_corpus_clip_with_debug_models(clip):
    from omni_core.models.whisper import WhisperASR
    from pipelines.inpair.config import AudioOptions

    models = AudioModels.load(AudioOptions(language="en"), "debug")
    assert isinstance(models.asr, WhisperASR) and "enhancer: off" in models.notes
    result = models.run(clip, 16000)
    duration = len(clip) / 16000
    assert_well_formed(result.turns, duration, exclusive=True)

    words = result.words  # garbage text from random weights, but real types and times
    assert words, "the debug Whisper writes a few tokens"
    for word in words:
        assert isinstance(word, Word) and word.text.strip()
        assert type(word.start_s) is float and type(word.end_s) is float
        assert 0.0 <= word.start_s <= word.end_s <= duration
        assert 0.0 <= word.probability <= 1.0
    assert all(a.end_s <= b.start_s for a, b in zip(words, words[1:], strict=False))
    assert transcribe(models.asr, clip, 16000, "en") == words  # temperature 0, no fallback
    assert transcribe(models.asr, clip[:0]) == []

    segs = result.segments
    assert segs == attribute_words(words, result.turns, max_gap_s=0.5)
    assert sum(len(s.words) for s in segs) + len(segs.dropped) == len(words)
    assert {s.speaker for s in segs} <= {t.speaker for t in result.turns}
    assert models.segments(clip, 16000) == segs
