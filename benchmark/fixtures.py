"""Benchmark fixtures in the released layout, built from the sample corpus.

``build_fixtures(corpus, out)`` writes ``out/bench/oneip`` (one-person instances) and
``out/bench/twoip`` (two-person instances) exactly as the release lays test cases out, and
``out/pred/<set>_<id>.mp4``: the corpus clip itself as the "generated" video, so every metric
has a real prediction to score whose ground truth is known (its speech is the caption's
``<S>`` spans, its faces are the identity images, its voices are the timbre references).
``people=(1, 2, 3)`` adds ``threeip``; ``tasks`` adds RV2AV sets (``oneip-rv2av``, ...: the
clip with every face box filled grey as the masked source video, no sound) and RA2V sets
(``oneip-ra2v``, ...: the clip's sound as the driving audio), in the layout's extension that
:mod:`benchmark.released` reads.

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
from omni_core.media import load_audio, probe, read_frames, write_image, write_mp4, write_wav

SETS = {1: "oneip", 2: "twoip", 3: "threeip"}
MASK_GREY = 127
SAMPLE_RATE = 16000


@dataclass
class Fixtures:
    bench: Path
    pred: Path
    instance_ids: list[str]


def build_fixtures(corpus_dir: str | Path, out: str | Path, *,
                   tasks: tuple[str, ...] = ("r2av",),
                   people: tuple[int, ...] = (1, 2)) -> Fixtures:
    corpus, out = Path(corpus_dir), Path(out)
    ids = []
    for task in tasks:
        ids += _task_fixtures(corpus, out, task, people)
    return Fixtures(out / "bench", out / "pred", ids)


def _task_fixtures(corpus: Path, out: Path, task: str, sizes: tuple[int, ...]) -> list[str]:
    files = read_manifest(corpus / "truth/files.parquet")
    people = read_manifest(corpus / "truth/people.parquet")
    turns = read_manifest(corpus / "truth/turns.parquet")
    ids = []
    for _, f in files[files.kind == "talking"].iterrows():
        n = int(f.n_people)
        if n not in SETS or n not in sizes:
            continue
        set_name = SETS[n] if task == "r2av" else f"{SETS[n]}-{task}"
        case = Path(f.file).stem
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
        if task == "rv2av":
            frames = read_frames(clip)
            for _, person in who.iterrows():
                x0, y0, x1, y1 = _box(frames.shape[1:3], person.face_box)
                frames[:, y0:y1, x0:x1] = MASK_GREY
            write_mp4(set_dir / "videos" / f"{case}.mp4", frames,
                      probe(clip).nominal_fps or 25.0)
        elif task == "ra2v":
            write_wav(set_dir / "driving_audios" / f"{case}.wav", audio, SAMPLE_RATE)
        (set_dir / "captions").mkdir(parents=True, exist_ok=True)
        (set_dir / "captions" / f"{case}.json").write_text(json.dumps(cap.render()))
        (out / "pred").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(clip, out / "pred" / f"{set_name}_{case}.mp4")
        ids.append(f"{set_name}_{case}")
    return ids


def _box(shape: tuple[int, int], box, margin: float = 0.25) -> tuple[int, int, int, int]:
    """The face box with ``margin`` on each side, clipped to an image of ``shape`` (h, w)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    mx, my = (x1 - x0) * margin, (y1 - y0) * margin
    h, w = shape
    return (max(int(x0 - mx), 0), max(int(y0 - my), 0), min(int(x1 + mx), w),
            min(int(y1 + my), h))


def _crop(frame: np.ndarray, box, margin: float = 0.25) -> np.ndarray:
    xa, ya, xb, yb = _box(frame.shape[:2], box, margin)
    return np.ascontiguousarray(frame[ya:yb, xa:xb])
