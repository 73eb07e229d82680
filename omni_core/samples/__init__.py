"""A small, deterministic, offline sample corpus with ground truth, for tests and the demo.

``make_corpus(out, seed=0)`` writes

- talking clips (1, 2 and 3 people): real face photos from installed packages, espeak-ng
  speech in a distinct voice per person, mouths animated from each person's own speech;
- the real two-speaker recording shipped with pyannote.audio with its RTTM and STM;
- broken inputs (empty, truncated, no audio, no video, variable frame rate, not media);
- ground truth as Parquet manifests (``corpus_files``, ``corpus_people``, ``corpus_turns``)
  and a README.md describing it all.
"""

from .corpus import GENERATOR_VERSION, ClipPlan, CorpusSummary, make_corpus, plan_corpus

__all__ = ["GENERATOR_VERSION", "ClipPlan", "CorpusSummary", "make_corpus", "plan_corpus"]
