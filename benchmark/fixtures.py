"""Benchmark fixtures in the released layout, built from the sample corpus.

``build_fixtures(corpus, out)`` writes ``out/bench/oneip`` (one-person instances) and
``out/bench/twoip`` (two-person instances) exactly as the release lays test cases out, and
``out/pred/<set>_<id>.mp4``: the corpus clip itself as the "generated" video, so every metric
has a real prediction to score whose ground truth is known (its speech is the caption's
``<S>`` spans, its faces are the identity images, its voices are the timbre references).

References come from the clip (as in-pair curation would take them): the identity image is a
crop around the person's face box on the first frame, the timbre reference is that person's
first utterance. Captions carry only what the corpus truth knows (speech, who says it, when);
descriptive fields say plainly that they are fixture text.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from omni_core.captions import StructuredCaption
from omni_core.manifests import read_manifest
from omni_core.media import load_audio, read_frames, write_image, write_wav

SETS = {1: "oneip", 2: "twoip"}
SAMPLE_RATE = 16000


@dataclass
class Fixtures:
    bench: Path
    pred: Path
    instance_ids: list[str]


def build_fixtures(corpus_dir: str | Path, out: str | Path) -> Fixtures:
    corpus, out = Path(corpus_dir), Path(out)
    files = read_manifest(corpus / "truth/files.parquet")
    people = read_manifest(corpus / "truth/people.parquet")
    turns = read_manifest(corpus / "truth/turns.parquet")
    ids = []
    for _, f in files[files.kind == "talking"].iterrows():
        n = int(f.n_people)
        if n not in SETS:
            continue
        set_name, case = SETS[n], Path(f.file).stem
        set_dir = out / "bench" / set_name
        clip = corpus / f.file
        who = people[people.file == f.file].sort_values("person")
        said = turns[(turns.file == f.file) & (turns.source == "generated")].sort_values("start_s")
        frame = read_frames(clip, [0])[0]
        audio = load_audio(clip, SAMPLE_RATE)
        cap = StructuredCaption(
            scene="Fixture clip from the sample corpus: faces on a plain backdrop.",
            appearance="", actions="", audio_description="Speech, no other sound.")
        joint = []
        for k, (_, person) in enumerate(who.iterrows(), start=1):
            sub = f"<sub{k}>"
            name = case if n == 1 else str(k - 1)
            cap.image_captions[f"<img{k}>"] = f"A person, identified as {sub}."
            write_image(set_dir / "imgs" / case / f"{name}.png", _crop(frame, person.face_box))
            mine = said[said.speaker == person.person]
            first = mine.iloc[0]
            a, b = int(first.start_s * SAMPLE_RATE), int(first.end_s * SAMPLE_RATE)
            write_wav(set_dir / "audios" / case / f"{name}.wav", audio[a:b], SAMPLE_RATE)
            cap.speaker_timestamps[sub] = [(round(t.start_s, 3), round(t.end_s, 3))
                                           for t in mine.itertuples()]
        subject = {p: f"<sub{k}>" for k, p in enumerate(who.person, start=1)}
        for t in said.itertuples():
            joint.append(f"{subject[t.speaker]} says, <S>{t.text}<E>")
        cap.joint = " ".join(joint)
        (set_dir / "captions").mkdir(parents=True, exist_ok=True)
        (set_dir / "captions" / f"{case}.json").write_text(json.dumps(cap.render()))
        (out / "pred").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(clip, out / "pred" / f"{set_name}_{case}.mp4")
        ids.append(f"{set_name}_{case}")
    return Fixtures(out / "bench", out / "pred", ids)


def _crop(frame: np.ndarray, box, margin: float = 0.25) -> np.ndarray:
    x0, y0, x1, y1 = (float(v) for v in box)
    mx, my = (x1 - x0) * margin, (y1 - y0) * margin
    h, w = frame.shape[:2]
    xa, ya = max(int(x0 - mx), 0), max(int(y0 - my), 0)
    xb, yb = min(int(x1 + mx), w), min(int(y1 + my), h)
    return np.ascontiguousarray(frame[ya:yb, xa:xb])
