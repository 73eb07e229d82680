"""Stage 2 of in-pair curation: word attribution by hand, and the whole stage (enhancement,
diarization, transcription, attribution) on debug models and the sample corpus' real audio.

The networks are tested on their own in ``tests/omni_core/models/``: ``test_diarizer.py``
(pyannote.audio 4 on debug models, the community-1 release layout), ``test_enhancer.py``
(ClearerVoice) and ``test_whisper.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

from omni_core.errors import OmniError
from omni_core.media import load_audio
from omni_core.models.diarizer import Turn
from omni_core.models.whisper import Word, transcribe
from pipelines.inpair.audio import AudioModels, Segment, attribute_words


@pytest.fixture(scope="module")
def clip(sample_corpus) -> np.ndarray:
    """A 3-person talking clip of the corpus, decoded at 16 kHz mono."""
    return load_audio(sample_corpus.out / "talking" / "talk04_3p.mp4", 16000)


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
