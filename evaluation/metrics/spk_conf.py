"""Speaker Confusion: does a subject speak another subject's lines, or take their look?

The paper judges each multi-person generation with a multimodal LLM and reports the rate of
confused videos (lower is better). No prompt text was published; ours is written from the
paper's two criteria and can be replaced with a file (``prompt_file``). Inputs sent: sampled
frames of the generated video, each subject's reference image labelled with its ``<subK>``
anchor, and the caption's joint block (who says what) with the speaker timestamps.
Without a configured judge the metric is reported as not computed, never as 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from omni_core.media import sample_indices
from omni_core.urls import redact

from ..judge import JudgeConfig, ask_binary, image_part
from ..registry import Metric, MetricSpec, Output, register

VERSION = "1"
DIRECTION = "lower"

DEFAULT_PROMPT = """\
You review a generated video of several people talking. You get frames sampled in time order,
one reference photo per person (each labelled with its tag, such as <sub1>), and the script:
which tag says which words, and when.

Answer 1 if the video confuses the speakers in either way:
(a) a person moves their lips to words that the script gives to another person, or a line is
    spoken while the wrong person's mouth moves;
(b) while someone speaks, their face or appearance mixes with another person's reference
    (features, hair or clothing of one person appear on the other).
Otherwise answer 0.

Reply with a single character: 1 or 0. No other text."""


@dataclass
class SpkConfOptions:
    n_frames: int = 8  # frames sent to the judge, evenly spaced (first and last included)
    prompt_file: str | None = None  # replaces DEFAULT_PROMPT
    judge: JudgeConfig = field(default_factory=JudgeConfig)


def build_content(frames, references, caption, max_side: int) -> list[dict]:
    """The user message: script, labelled references, then the frames in order."""
    lines = [f"Script: {caption.joint}"]
    for sub, spans in caption.speaker_timestamps.items():
        lines.append(f"{sub} speaks at " + ", ".join(f"{a:.1f}-{b:.1f} s" for a, b in spans))
    content: list[dict] = [{"type": "text", "text": "\n".join(lines)}]
    for k, ref in enumerate(references, start=1):
        content.append({"type": "text", "text": f"Reference photo of <sub{k}>:"})
        content.append(image_part(ref, max_side))
    content.append({"type": "text", "text": f"{len(frames)} frames of the generated video:"})
    content += [image_part(f, max_side) for f in frames]
    return content


@register
class SpeakerConfusion(Metric):
    spec = MetricSpec(
        name="spk_conf", version=VERSION, needs=("frames", "ref_images", "caption"),
        outputs=(Output("spk_conf", "Spk-Conf", DIRECTION),), multi_person_only=True,
        doc="rate of multi-person videos a multimodal LLM judges speaker-confused")
    Options = SpkConfOptions

    def setup(self) -> None:
        o = self.options
        self.prompt = Path(o.prompt_file).read_text() if o.prompt_file else DEFAULT_PROMPT
        self.configured = all(o.judge.resolved())

    def compute(self, inp) -> dict:
        if not self.configured:
            return {"spk_conf_reason": "no judge configured (OMNI_JUDGE_BASE_URL, "
                    "OMNI_JUDGE_MODEL)"}
        idx = sample_indices(inp.info.n_frames, self.options.n_frames, "linspace")
        content = build_content(inp.frames(tuple(idx)), inp.reference_images(), inp.caption,
                                self.options.judge.max_image_side)
        verdict, _ = ask_binary(self.options.judge, self.prompt, content)  # JudgeError: a row
        return {"spk_conf": float(verdict)}

    def describe(self) -> dict:
        d = super().describe()
        base, model = self.options.judge.resolved()
        d.update(judge_base_url=redact(base), judge_model=model,
                 prompt="default" if not self.options.prompt_file else self.options.prompt_file)
        return d
