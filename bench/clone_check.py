"""Operating points of the cross-pair clone check on the lite models (GE2E + PocketSphinx).

``python -m bench.clone_check [--corpus DIR] [--json PATH]`` (about a minute on one core;
the sample corpus is built under DIR, or a temporary folder, first): the figures of
docs/crosspair.md, "Clone check on the lite models", and of the comment beside
:attr:`omni_core.models.ge2e.GE2EEncoder.same_speaker_threshold`.

GE2E cosines of speech pieces of one speaker ("same") and of two speakers ("other"):

- ``corpus``: the sample corpus's talking clips, one espeak-ng voice per person (the truth's
  ``voice``; one voice plays a person in several clips): each truth turn is one piece, the
  stretch another turn overlaps cut off;
- ``real``: real voices: f5-tts's four example prompts (basic, main, town, country; studio)
  and the two callers of pyannote.audio's telephone sample (the corpus's
  ``recording/sample.wav``, each caller's own speech per the RTTM, overlaps left out), cut
  into pieces of at least :data:`PIECE_S`;
- ``espeak clone``: the espeak-ng double (:class:`~pipelines.crosspair.voices.EspeakCloner`)
  cloning each corpus turn into another sentence (:func:`~pipelines.crosspair.voices.
  pick_text`), against that turn ("same") and against the turns of the other voices
  ("other");
- ``espeak clone of real voices``: the double prompted by each real piece, against that
  piece ("same": what the check measures) and against the other real speakers' pieces.

Then the check itself (:func:`~pipelines.crosspair.voices.check_clone`, lite models, the
verifier's threshold) on the corpus clones: the similarity pass rate, the voice the double
picked for each turn, and PocketSphinx's WER on the clone against its own sentence and
against another sentence (the WER gate needs the first well below the second); the same two
WERs on f5-tts's basic prompt (real speech); the pass rate of the real voices' clones; and
the double's one-time cost (its candidate voices' calibration embeddings, one CPU thread).
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: real voices are cut into pieces of at least this length (a clone says one sentence)
PIECE_S = 2.5
SR = 16000


@dataclass
class Speech:
    speaker: str
    wav: np.ndarray  # 16 kHz mono
    text: str | None = None


def corpus_speech(corpus: Path) -> list[Speech]:
    """One piece per truth turn of the talking clips; speaker = the person's espeak voice."""
    import pandas as pd

    from omni_core.media.audio import load_audio

    people = pd.read_parquet(corpus / "truth" / "people.parquet")
    turns = pd.read_parquet(corpus / "truth" / "turns.parquet")
    turns = turns[turns.file.str.startswith("talking/")]
    voice = {(p.file, p.person): p.voice for p in people.itertuples()}
    out = []
    for file, mine in turns.groupby("file", sort=True):
        wav = load_audio(corpus / file, SR)
        spans = list(zip(mine.start_s, mine.end_s, strict=True))
        for t in mine.itertuples():
            a, b = t.start_s, t.end_s
            for c, d in spans:  # cut off what another turn overlaps
                if (c, d) != (t.start_s, t.end_s) and c < b and d > a:
                    a, b = (d, b) if c <= a else (a, min(b, c))
            out.append(Speech(voice[(file, t.speaker)], wav[int(a * SR):int(b * SR)], t.text))
    return out


def _pieces(speaker: str, wav: np.ndarray) -> list[Speech]:
    n = max(1, int(len(wav) / SR // PIECE_S))
    return [Speech(speaker, p) for p in np.array_split(wav, n)]


def real_speech(corpus: Path) -> list[Speech]:
    """f5-tts's example voices and the telephone sample's two callers, in pieces."""
    import pandas as pd

    from omni_core.media.audio import load_audio

    spec = importlib.util.find_spec("f5_tts")
    assert spec is not None and spec.submodule_search_locations
    ex = Path(next(iter(spec.submodule_search_locations))) / "infer" / "examples"
    out = []
    for name, rel in (("basic", "basic/basic_ref_en.wav"), ("main", "multi/main.flac"),
                      ("town", "multi/town.flac"), ("country", "multi/country.flac")):
        out += _pieces(f"f5:{name}", load_audio(ex / rel, SR))
    turns = pd.read_parquet(corpus / "truth" / "turns.parquet")
    rttm = turns[(turns.file == "recording/sample.wav") & (turns.source == "rttm")]
    wav = load_audio(corpus / "recording" / "sample.wav", SR)
    speakers = sorted(set(rttm.speaker))
    mask = np.zeros((len(speakers), len(wav) // 160 + 1), dtype=bool)  # 10 ms frames
    for t in rttm.itertuples():
        mask[speakers.index(t.speaker), int(t.start_s * 100):int(t.end_s * 100)] = True
    for i, s in enumerate(speakers):
        own = np.flatnonzero(mask[i] & (mask.sum(axis=0) == 1))
        out += _pieces(f"call:{s}", np.concatenate([wav[f * 160:(f + 1) * 160] for f in own]))
    return out


def stats(x: list[float]) -> dict[str, Any]:
    a = np.asarray(x, dtype=np.float64)
    return {"n": int(a.size), "min": round(float(a.min()), 3),
            "median": round(float(np.median(a)), 3), "max": round(float(a.max()), 3)}


def pairs(emb: np.ndarray, speakers: list[str]) -> tuple[list[float], list[float]]:
    """Cosines of every pair of pieces: (same speaker, different speakers)."""
    sim = emb @ emb.T
    same, other = [], []
    for i, j in itertools.combinations(range(len(speakers)), 2):
        (same if speakers[i] == speakers[j] else other).append(float(sim[i, j]))
    return same, other


def equal_error(same: list[float], other: list[float]) -> dict[str, float]:
    """The threshold where the false-reject share of ``same`` (below it) meets the
    false-accept share of ``other`` (at or above it), and that rate."""
    s, o = np.asarray(same), np.asarray(other)
    best = (2.0, 0.0, 0.0)
    for t in np.unique(np.concatenate([s, o, [o.max() + 1e-6]])):
        frr, far = float((s < t).mean()), float((o >= t).mean())
        if abs(frr - far) < best[0]:
            best = (abs(frr - far), float(t), (frr + far) / 2)
    return {"threshold": round(best[1], 3), "rate": round(best[2], 3)}


def run(corpus_dir: Path | None = None) -> dict[str, Any]:
    import torch

    from omni_core.samples import make_corpus
    from omni_core.wer import utterance_wer
    from pipelines.crosspair.voices import (
        CloneCheckOptions,
        EspeakCloner,
        check_clone,
        load_check_models,
        load_texts,
        pick_text,
        voice_grid,
    )

    torch.set_num_threads(1)  # small LSTM batches: one thread is the fastest
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="omni-clone-check-") as tdir:
        corpus = make_corpus(corpus_dir or Path(tdir) / "corpus", seed=0).out
        models = load_check_models(lite=True)
        enc = models.verifier
        out: dict[str, Any] = {"models": models.describe(),
                               "threshold": models.min_similarity}
        groups: dict[str, tuple[list[float], list[float]]] = {}
        turns = corpus_speech(corpus)
        emb = np.stack([enc.embed(t.wav) for t in turns])
        groups["corpus"] = pairs(emb, [t.speaker for t in turns])
        real = real_speech(corpus)
        remb = np.stack([enc.embed(r.wav) for r in real])
        same, other = pairs(remb, [r.speaker for r in real])
        groups["real"] = (same, other)
        tel = [i for i, r in enumerate(real) if r.speaker.startswith("call:")]
        groups["real, telephone only"] = pairs(remb[tel], [real[i].speaker for i in tel])

        cloner, texts = EspeakCloner(), load_texts(None)
        grid = voice_grid(cloner.candidates())
        out["espeak_grid"] = {"candidates": len(grid.voices),
                              "seconds": round(grid.seconds, 1)}
        clone_same, clone_other, passed, wer_right, wer_wrong, picks = [], [], [], [], [], []
        for i, t in enumerate(turns):
            text = pick_text(texts, t.text or "", f"{i}")
            wrong = pick_text(texts, text, f"wrong{i}")
            wav = cloner.clone(text, t.wav, SR, "")
            check = check_clone(wav, SR, t.wav, SR, text, models,
                                CloneCheckOptions(min_similarity=None, max_wer=float("inf")))
            e = enc.embed(wav)
            clone_same.append(check.similarity)
            clone_other += [float(e @ emb[j]) for j, u in enumerate(turns)
                            if u.speaker != t.speaker]
            passed.append(check.similarity >= models.min_similarity)
            wer_right.append(check.wer)
            wer_wrong.append(float(utterance_wer(wrong, check.transcript or "").wer))
            picks.append({"speaker": t.speaker, "picked": cloner.voice_for(t.wav, SR).label,
                          "similarity": round(check.similarity, 3)})
        groups["espeak clone"] = (clone_same, clone_other)
        real_same, real_other = [], []
        for i, r in enumerate(real):
            wav = cloner.clone(pick_text(texts, "", f"real{i}"), r.wav, SR, "")
            e = enc.embed(wav)
            real_same.append(float(e @ remb[i]))
            real_other += [float(e @ remb[j]) for j, u in enumerate(real)
                           if u.speaker != r.speaker]
        groups["espeak clone of real voices"] = (real_same, real_other)
        th = models.min_similarity
        out["groups"] = {k: {"same": stats(s), "other": stats(o),
                             "equal_error": equal_error(s, o),
                             "false_rejects": int(sum(x < th for x in s)),
                             "false_accepts": int(sum(x >= th for x in o))}
                         for k, (s, o) in groups.items()}
        out["espeak_clone_check"] = {
            "clones": len(passed), "similarity_pass_rate": round(float(np.mean(passed)), 3),
            "wer_own_text": stats(wer_right), "wer_other_text": stats(wer_wrong),
            "picks": picks}
        out["espeak_real_clone_pass_rate"] = round(
            float(np.mean([x >= th for x in real_same])), 3)
        basic = real_speech_basic()
        right = models.transcribe(basic.wav)
        out["real_wer"] = {
            "f5 basic, own text": round(utterance_wer(basic.text or "", right).wer, 3),
            "f5 basic, another text": round(utterance_wer(texts[0], right).wer, 3)}
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def real_speech_basic() -> Speech:
    """f5-tts's basic English prompt with its transcript."""
    import tomllib

    from omni_core.media.audio import load_audio

    spec = importlib.util.find_spec("f5_tts")
    assert spec is not None and spec.submodule_search_locations
    d = Path(next(iter(spec.submodule_search_locations))) / "infer" / "examples" / "basic"
    text = tomllib.loads((d / "basic.toml").read_text())["ref_text"]
    return Speech("f5:basic", load_audio(d / "basic_ref_en.wav", SR), text)


def markdown(r: dict[str, Any]) -> str:
    def cell(s: dict[str, Any]) -> str:
        return f"{s['n']} | {s['min']:.3f} / {s['median']:.3f} / {s['max']:.3f}"

    th = r["threshold"]
    lines = ["| pairs | same: n | min / median / max | other: n | min / median / max "
             f"| equal error (threshold, rate) | at {th}: same rejected, other accepted |",
             "|---|---|---|---|---|---|---|"]
    for name, g in r["groups"].items():
        ee, n_s, n_o = g["equal_error"], g["same"]["n"], g["other"]["n"]
        lines.append(f"| {name} | {cell(g['same'])} | {cell(g['other'])} | "
                     f"{ee['threshold']:.3f}, {ee['rate']:.2f} | {g['false_rejects']}/{n_s}, "
                     f"{g['false_accepts']}/{n_o} |")
    c = r["espeak_clone_check"]
    g = r["espeak_grid"]
    lines += ["", f"GE2E threshold {r['threshold']}: {c['clones']} espeak clones of corpus "
              f"turns, similarity pass rate {c['similarity_pass_rate']:.0%}; of real voices "
              f"{r['espeak_real_clone_pass_rate']:.0%}. The double's {g['candidates']} "
              f"candidate voices took {g['seconds']} s once.",
              "Voices picked: " + "; ".join(f"{p['speaker']} -> {p['picked']} "
                                            f"({p['similarity']:.3f})" for p in c["picks"]),
              f"PocketSphinx WER of the clones, own sentence: {c['wer_own_text']}; another "
              f"sentence: {c['wer_other_text']}.",
              f"PocketSphinx WER on real speech: {r['real_wer']}.",
              f"({r['seconds']} s; {'; '.join(r['models'])})"]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=None,
                    help="build (or reuse) the sample corpus here")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args()
    r = run(args.corpus)
    if args.json:
        args.json.write_text(json.dumps(r, indent=2))
    print(markdown(r))


if __name__ == "__main__":
    main()
