"""Word error rate of one utterance with seed-tts-eval's English text normalisation.

Shared by the evaluator (:mod:`evaluation.metrics.wer`, which adds Whisper and the benchmark
protocol) and the curation scorer (:mod:`pipelines.inpair.score`), which may not import the
evaluation package. :func:`normalize_text` re-states seed-tts-eval's ``process_one`` for
``lang == "en"``; :func:`utterance_wer` aligns the normalised texts with ``jiwer.process_words``
(jiwer 4) and keeps its counts in :class:`UtteranceWER`.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

__all__ = ["PUNCTUATION", "UtteranceWER", "normalize_text", "utterance_wer"]

# Characters seed-tts-eval deletes: ``string.punctuation`` + ``zhon.hanzi.punctuation`` (zhon
# 2.x: fullwidth ASCII variants, CJK brackets and marks, en/em dashes, curly quotes, ellipsis,
# middle dot, ideographic space and stops), minus the ASCII apostrophe, which it keeps.
_ZHON_PUNCTUATION = (
    "\uff02\uff03\uff04\uff05\uff06\uff07\uff08\uff09\uff0a\uff0b\uff0c\uff0d"
    "\uff0f\uff1a\uff1b\uff1c\uff1d\uff1e\uff20\uff3b\uff3c\uff3d\uff3e\uff3f"
    "\uff40\uff5b\uff5c\uff5d\uff5e\uff5f\uff60"
    "\uff62\uff63\uff64"
    "\u3000\u3001\u3003"
    "\u3008\u3009\u300a\u300b\u300c\u300d\u300e\u300f\u3010\u3011"
    "\u3014\u3015\u3016\u3017\u3018\u3019\u301a\u301b\u301c\u301d\u301e\u301f"
    "\u3030\u303e\u303f"
    "\u2013\u2014"
    "\u2018\u2019\u201b\u201c\u201d\u201e\u201f"
    "\u2026\u2027\ufe4f\ufe51\ufe54\u00b7"
    "\uff0e\uff01\uff1f\uff61\u3002"
)
PUNCTUATION = "".join(sorted(set(string.punctuation + _ZHON_PUNCTUATION) - {"'"}))
_DELETE = str.maketrans("", "", PUNCTUATION)


@dataclass(frozen=True)
class UtteranceWER:
    """jiwer's alignment counts for one normalised reference/hypothesis pair.

    ``substitution_rate`` etc. are upstream's extra columns: counts over reference words.
    """

    wer: float
    reference: str  # normalised
    hypothesis: str  # normalised
    hits: int
    substitutions: int
    deletions: int
    insertions: int

    @property
    def n_reference_words(self) -> int:
        return self.hits + self.substitutions + self.deletions

    @property
    def substitution_rate(self) -> float:
        return self.substitutions / max(self.n_reference_words, 1)

    @property
    def deletion_rate(self) -> float:
        return self.deletions / max(self.n_reference_words, 1)

    @property
    def insertion_rate(self) -> float:
        return self.insertions / max(self.n_reference_words, 1)


def normalize_text(text: str) -> str:
    """seed-tts-eval's English normalisation (``process_one`` with ``lang == "en"``).

    Deletes every character of :data:`PUNCTUATION` (ASCII and CJK punctuation except the ASCII
    apostrophe) *without* inserting a space, so "well-known" -> "wellknown" and "wait—what"
    -> "waitwhat" exactly as upstream; the typographic apostrophe (U+2019) is deleted too
    ("don’t" -> "dont") while "don't" keeps its apostrophe. Then whitespace runs collapse to one
    space, ends are stripped (upstream's ``replace('  ', ' ')`` plus jiwer's default
    ``RemoveMultipleSpaces`` + ``Strip``) and the text is lower-cased. One deliberate
    difference: a single tab or newline also separates words here (upstream glued the words).
    """
    return " ".join(text.translate(_DELETE).split()).lower()


def utterance_wer(reference: str, hypothesis: str, *, normalize: bool = True) -> UtteranceWER:
    """WER of one utterance with ``jiwer.process_words`` (jiwer 4); normalises both first.

    An empty reference follows jiwer 4: WER = number of inserted words ("" vs "" is 0).
    """
    import jiwer

    ref = normalize_text(reference) if normalize else reference
    hyp = normalize_text(hypothesis) if normalize else hypothesis
    out = jiwer.process_words(ref, hyp)
    return UtteranceWER(wer=float(out.wer), reference=ref, hypothesis=hyp, hits=int(out.hits),
                        substitutions=int(out.substitutions), deletions=int(out.deletions),
                        insertions=int(out.insertions))
