"""The README.md written at the root of a sample corpus."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .broken import BrokenFile
    from .corpus import ClipPlan


def readme_text(seed: int, plans: list[ClipPlan], broken: list[BrokenFile],
                stm_mapping: str, *, version: int, size: tuple[int, int], fps: int,
                face_px: dict[int, int]) -> str:
    """The corpus README; the builder passes its own geometry (this module imports nothing
    of it, so the two never import each other)."""
    from .speech import SAMPLE_RATE

    GENERATOR_VERSION, (WIDTH, HEIGHT), FPS, FACE_PX = version, size, fps, face_px  # noqa: N806

    lines = [
        "# Sample corpus (generated)",
        "",
        f"Built by `omni_core.samples.make_corpus(out, seed={seed})`, generator version "
        f"{GENERATOR_VERSION}. Offline and deterministic: the same seed gives the same truth "
        "tables, the same decoded audio samples and video frames (and, on the same machine "
        "and ffmpeg build, byte-identical files). Rebuilding over this directory with the same "
        "seed is a no-op (see `corpus.json`).",
        "",
        "## Layout",
        "",
        "    talking/talkNN_Kp.mp4    talking clips with K people (H.264 + AAC)",
        "    recording/sample.wav     real 2-speaker recording shipped with pyannote.audio",
        "    recording/sample.rttm    its diarization reference",
        "    recording/sample.stm     its transcript reference",
        "    broken/*                 inputs a reader must reject or flag (see below)",
        "    truth/files.parquet      schema corpus_files: one row per media file",
        "    truth/people.parquet     schema corpus_people: one row per person per clip",
        "    truth/turns.parquet      schema corpus_turns: who speaks when (and what)",
        "    corpus.json              build stamp (seed, version, file sizes)",
        "",
        "Read the tables with `omni_core.manifests.read_manifest`.",
        "",
        "## Talking clips",
        "",
        f"{WIDTH}x{HEIGHT}, {FPS} fps, H.264 yuv420p + AAC mono {SAMPLE_RATE} Hz. Real face "
        "photos from installed packages (scikit-image's astronaut, insightface's "
        "Tom_Hanks_54745.png and four faces of its t1.jpg group photo) are placed left to right "
        "(p0, p1, ...) on a gradient background whose shade drifts slowly. Face boxes are "
        f"{FACE_PX[3]}-{FACE_PX[1]} px tall. Each person has one espeak-ng voice (the same in "
        "every clip they appear in) and says Harvard sentences; in multi-person clips they take "
        "turns with short pauses, and one clip has a short overlap. Each mouth is a dark "
        "ellipse opened by the RMS envelope (40 ms frames, smoothed) of that person's own "
        "speech and closed while they are silent, so who speaks when is visible.",
        "",
        "Turns (`source = generated`) are measured from where each trimmed utterance was "
        "placed in the audio, so spans are tight.",
        "",
        "| file | s | people (face, voice) |",
        "|---|---|---|",
    ]
    for p in plans:
        who = "; ".join(f"p{i}: {f.key} ({v.name})"
                        for i, (f, v) in enumerate(zip(p.faces, p.voices, strict=True)))
        lines.append(f"| {p.name} | {p.duration_s:.2f} | {who} |")
    lines += [
        "",
        "## The recording",
        "",
        "`recording/sample.wav` is copied unchanged from pyannote.audio. Its turns appear "
        "twice in `corpus_turns`, told apart by the `source` column:",
        "",
        "- `source = rttm`: one row per RTTM line, `speaker` = the RTTM label, `text` null. "
        "Use these as the diarization reference.",
        "- `source = stm`: one row per STM line with its transcript in `text`; `speaker` is "
        f"the RTTM label the STM name overlaps most ({stm_mapping}). Use these for WER.",
        "",
        "Diarization references are the rows with `source != 'stm'`; transcripts are the rows "
        "with `text` not null.",
        "",
        "## Broken inputs",
        "",
        "| file | expected error | what it is |",
        "|---|---|---|",
    ]
    for b in broken:
        lines.append(f"| broken/{b.name} | {b.expected_error} | {b.description} |")
    lines.append("")
    return "\n".join(lines)
