"""The real two-speaker recording that ships with pyannote.audio, with its references.

``pyannote/audio/sample/sample.wav`` (30 s, 16 kHz, two telephone speakers) comes with
``sample.rttm`` (who speaks when, labels ``speaker90``/``speaker91``) and ``sample.stm``
(what they say, names ``Diane``/``Sheila``). Both go into ``corpus_turns``:

- RTTM rows: ``source="rttm"``, ``speaker`` = the RTTM label, ``text`` null;
- STM rows: ``source="stm"``, ``speaker`` = the RTTM label that overlaps that person's STM
  segments most (Diane -> speaker90, Sheila -> speaker91), ``text`` = the transcript line.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections import defaultdict
from pathlib import Path

import soundfile as sf

from ..errors import OmniError

FILES = ("sample.wav", "sample.rttm", "sample.stm")


def sample_dir() -> Path:
    """Where pyannote.audio keeps its sample (found without importing torch)."""
    spec = importlib.util.find_spec("pyannote.audio")
    if spec is None or not spec.submodule_search_locations:
        raise OmniError("sample corpus: pyannote.audio is not installed (its sample recording "
                        "is part of the corpus)")
    d = Path(next(iter(spec.submodule_search_locations))) / "sample"
    missing = [f for f in FILES if not (d / f).is_file()]
    if missing:
        raise OmniError(f"sample corpus: {missing} missing from {d}")
    return d


def parse_rttm(text: str) -> list[tuple[str, float, float]]:
    """(label, start_s, end_s) per SPEAKER line."""
    out = []
    for line in text.splitlines():
        f = line.split()
        if len(f) >= 8 and f[0] == "SPEAKER":
            start, dur = float(f[3]), float(f[4])
            out.append((f[7], start, start + dur))
    return out


def parse_stm(text: str) -> list[tuple[str, float, float, str]]:
    """(speaker, start_s, end_s, transcript) per line; ';;' comments skipped."""
    out = []
    for line in text.splitlines():
        if not line.strip() or line.startswith(";;"):
            continue
        f = line.split(maxsplit=5)
        if len(f) < 5:
            continue
        out.append((f[2], float(f[3]), float(f[4]), f[5].strip() if len(f) > 5 else ""))
    return out


def map_stm_speakers(rttm: list[tuple[str, float, float]],
                     stm: list[tuple[str, float, float, str]]) -> dict[str, str]:
    """Each STM speaker name -> the RTTM label its segments overlap most in time."""
    overlap: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for name, s, e, _ in stm:
        for label, rs, re_ in rttm:
            overlap[name][label] += max(0.0, min(e, re_) - max(s, rs))
    return {name: max(sorted(by), key=lambda lb: by[lb]) for name, by in overlap.items()}


def copy_recording(dest: Path) -> tuple[dict, list[dict], str]:
    """Copy wav/rttm/stm into ``dest``; return the corpus_files row, the corpus_turns rows
    and a one-line description of the speaker mapping."""
    src = sample_dir()
    dest.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        tmp = dest / f".{name}.tmp"
        shutil.copyfile(src / name, tmp)
        os.replace(tmp, dest / name)
    rttm = parse_rttm((dest / "sample.rttm").read_text())
    stm = parse_stm((dest / "sample.stm").read_text())
    names = map_stm_speakers(rttm, stm)
    rel = "recording/sample.wav"
    info = sf.info(str(dest / "sample.wav"))
    mapping = ", ".join(f"{k} -> {v}" for k, v in sorted(names.items()))
    file_row = dict(file=rel, kind="recording", n_people=len({r[0] for r in rttm}),
                    duration_s=info.frames / info.samplerate, fps=None, width=None,
                    height=None, expected_error=None,
                    description=f"real 2-speaker telephone recording from pyannote.audio "
                                f"({info.samplerate} Hz); references sample.rttm and "
                                f"sample.stm beside it; STM names mapped: {mapping}")
    turns = [dict(file=rel, source="rttm", speaker=label, start_s=round(s, 4),
                  end_s=round(e, 4), text=None) for label, s, e in rttm]
    turns += [dict(file=rel, source="stm", speaker=names[n], start_s=round(s, 4),
                   end_s=round(e, 4), text=t) for n, s, e, t in stm]
    return file_row, turns, mapping
