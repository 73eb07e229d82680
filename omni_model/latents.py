"""Latent extraction: curation manifests -> latent shards, once, as a Ray Data step.

``omni latents --curation OUT_CURATION --out LATENTS --flavor F [--weights W]`` reads the
``samples`` manifest of an in-pair (or cross-pair) curation run and, per sample, on actors
that load the encoders once:

* the clip's first ``frames`` frames, resized to cover the flavor's frame and centre-cropped,
  scaled to [-1, 1] -> the Wan2.2 video VAE -> video latents ``(C, F, h, w)``;
* the same span of audio at 16 kHz -> the MMAudio VAE -> audio latents ``(L, C)``;
* each subject's identity crop, letterboxed on white to the frame size -> one latent frame;
  each subject's timbre reference, the middle ``voice_seconds`` (1 s, as the release) ->
  ``voice_latents`` audio latents;
* the caption's prompt text (:meth:`StructuredCaption.prompt_text`) -> umT5;
* the reference masks in latent space: the latent frame holding each identity crop's frame
  and the crop's box (after the same resize / crop, rounded outwards to the latent grid), and
  the audio latents of each timbre span;
* with ``source_video`` on, the latents of the target video with every subject's head region
  filled with grey (face track boxes interpolated per frame and widened by ``head_expand``):
  the RV2AV source.

The sample row's ``task`` (r2av | rv2av | ra2v; a stage-3 sample table deals them 4 : 3 : 3)
goes into the latent index: the trainer trains each micro-batch on its samples' task. So do
the curation keys of what the sample shows (its subjects' and references' identities, clips
and videos): with ``heldout`` (``--heldout BENCH``, a benchmark made by ``omni benchmark
build``) a sample that shows a held-out identity is not encoded but refused (an ``errors`` row
of stage ``heldout``: which sample, identity, person, benchmark), and ``omni train`` checks the
index again (:mod:`omni_core.heldout`).

Each sample's tensors are written as a part (``_results/latents/samples/...``) by the
actor, so a killed run resumes where it stopped and a rerun does nothing; the driver then
packs the parts into shards (:class:`~omni_model.data.ShardWriter`) with the null-text
embeddings and ``meta.json``. ``--out`` may be a URL (``s3://bucket/latents``, any fsspec
location): parts and shards are uploaded as they are written and their local copies dropped,
so neither the actors' nodes nor the driver ever hold the whole latent set, and ``omni
train`` reads it from there (:mod:`omni_model.data`). A sample that fails is an ``errors``
row (stage ``latents``, with the reason) and never stops the run.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from omni_core.config import to_dict
from omni_core.errors import OmniError
from omni_core.jobs import JobSummary, ResultStore, Stage, StagePlan, StageResources, WorkItem
from omni_core.ray_helpers import RayConfig

from .data import NULL_TEXTS, LatentSample, ShardWriter
from .flavors import Geometry, get_flavor

#: the release's negative prompts (the "empty text" of the guidance, per stream)
VIDEO_NEGATIVE = "jitter, bad hands, blur, distortion"
AUDIO_NEGATIVE = "robotic, muffled, echo, distorted"


@dataclass
class LatentsConfig:
    flavor: str = "debug"
    weights: str = "debug"  # debug | random | a weights folder (VAEs and text encoder)
    device: str = "cpu"
    #: the clips' frame decoder: decord | torchcodec | torchcodec-cuda (NVDEC, GPU workers)
    decoder: str = "decord"
    storage_dtype: str = "bfloat16"  # of the shards ("float32" for exactness)
    shard_size: int = 64
    source_video: bool = True
    head_expand: float = 1.6
    voice_seconds: float = 1.0
    video_negative: str = VIDEO_NEGATIVE
    audio_negative: str = AUDIO_NEGATIVE
    #: benchmarks (folders or their heldout.parquet, from `omni benchmark build`) whose
    #: held-out identities must not be trained on: their samples are refused (error rows,
    #: stage ``heldout``), and a curation whose every sample is held out is an error
    heldout: list[str] = field(default_factory=list)
    #: what each encoder actor reserves (one actor by default: the encoders are large)
    resources: StageResources = field(default_factory=lambda: StageResources(max_actors=1))
    ray: RayConfig = field(default_factory=lambda: RayConfig(include_dashboard=False))


# --------------------------------------------------------------------------------------------
# geometry of the pixel -> latent mapping


@dataclass(frozen=True)
class Fit:
    """Resize to cover ``(width, height)`` then centre-crop: ``x' = x * scale - left``."""

    scale: float
    left: float
    top: float
    width: int
    height: int

    @classmethod
    def cover(cls, src_w: int, src_h: int, width: int, height: int) -> Fit:
        scale = max(width / src_w, height / src_h)
        return cls(scale, (src_w * scale - width) / 2, (src_h * scale - height) / 2, width,
                   height)

    def box(self, box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        x0, y0, x1, y1 = box
        return (x0 * self.scale - self.left, y0 * self.scale - self.top,
                x1 * self.scale - self.left, y1 * self.scale - self.top)

    def frames(self, frames: np.ndarray) -> np.ndarray:
        import cv2

        t, h, w, _ = frames.shape
        nw, nh = max(self.width, round(w * self.scale)), max(self.height, round(h * self.scale))
        left = int(round((nw - self.width) / 2))
        top = int(round((nh - self.height) / 2))
        out = np.empty((t, self.height, self.width, 3), dtype=np.uint8)
        for i in range(t):
            r = cv2.resize(frames[i], (nw, nh), interpolation=cv2.INTER_AREA)
            out[i] = r[top: top + self.height, left: left + self.width]
        return out


def latent_frame(frame_index: int, temporal_stride: int) -> int:
    """The latent frame a video frame is encoded into by the causal Wan VAE: frame 0 alone,
    then ``temporal_stride`` frames per latent frame."""
    return 0 if frame_index <= 0 else (frame_index - 1) // temporal_stride + 1


def video_mask(geometry: Geometry, fit: Fit, frames: list[int | None],
               boxes: list[tuple[float, float, float, float] | None]) -> torch.Tensor:
    """M_v in latent space ``(F, h, w)``: 1 on each identity crop's box (rounded outwards) in
    the latent frame of its source frame (``frames``: frame numbers at the geometry's fps);
    crops outside the encoded frames leave no mark."""
    f = geometry.latent_frames
    h, w = geometry.latent_size
    s = geometry.video_stride[1]
    m = torch.zeros(f, h, w)
    for idx, box in zip(frames, boxes, strict=True):
        if idx is None or box is None or idx >= geometry.frames:
            continue
        lf = latent_frame(int(idx), geometry.video_stride[0])
        x0, y0, x1, y1 = fit.box(tuple(box))
        c0, r0 = max(0, math.floor(x0 / s)), max(0, math.floor(y0 / s))
        c1, r1 = min(w, math.ceil(x1 / s)), min(h, math.ceil(y1 / s))
        if c1 > c0 and r1 > r0:
            m[lf, r0:r1, c0:c1] = 1.0
    return m


def audio_mask(geometry: Geometry, spans: list[tuple[float, float]]) -> torch.Tensor:
    """M_a in latent space ``(L,)``: 1 on the latents overlapping each timbre span."""
    n = geometry.audio_latents
    rate = geometry.sample_rate / geometry.audio_hop
    m = torch.zeros(n)
    for span in spans:
        if span is None:
            continue
        a, b = float(span[0]), float(span[1])
        i0, i1 = max(0, math.floor(a * rate)), min(n, math.ceil(b * rate))
        if i1 > i0:
            m[i0:i1] = 1.0
    return m


def interpolate_boxes(frames: list[int], boxes: list[tuple[float, ...]], n: int
                      ) -> np.ndarray:
    """Per-frame boxes ``(n, 4)`` from a track's sampled detections: linear between them,
    held before the first and after the last (NaN for a track without detections)."""
    out = np.full((n, 4), np.nan)
    if not frames:
        return out
    fr = np.asarray(frames, dtype=float)
    bx = np.asarray(boxes, dtype=float)
    order = np.argsort(fr)
    fr, bx = fr[order], bx[order]
    t = np.arange(n, dtype=float)
    for c in range(4):
        out[:, c] = np.interp(t, fr, bx[:, c])
    return out


def grey_heads(frames: np.ndarray, tracks: list[np.ndarray], fit: Fit,
               expand: float) -> np.ndarray:
    """``frames`` (already fitted) with each track's box, widened ``expand`` times about its
    centre, filled with mid grey (0 in [-1, 1]) in every frame."""
    out = frames.copy()
    h, w = out.shape[1:3]
    for per_frame in tracks:
        for i in range(min(len(out), len(per_frame))):
            if np.isnan(per_frame[i]).any():
                continue
            x0, y0, x1, y1 = fit.box(tuple(per_frame[i]))
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            hw, hh = (x1 - x0) * expand / 2, (y1 - y0) * expand / 2
            a, b = max(0, int(cx - hw)), min(w, int(math.ceil(cx + hw)))
            c, d = max(0, int(cy - hh)), min(h, int(math.ceil(cy + hh)))
            out[i, c:d, a:b] = 128
    return out


# --------------------------------------------------------------------------------------------
# the encoders of one actor


class Encoders:
    """The three encoders of a flavor, loaded once (per actor)."""

    @staticmethod
    def check(weights: str) -> None:
        """The one-line error loading the encoders would raise for a missing checkpoint;
        loads nothing (a job's pre-flight)."""
        from .audio_vae import AudioVAE
        from .text_encoder import TextEncoder
        from .video_vae import VideoVAE

        for component in (VideoVAE, AudioVAE, TextEncoder):
            component.check_weights(weights)

    def __init__(self, cfg: LatentsConfig) -> None:
        from .audio_vae import AudioVAE
        from .text_encoder import TextEncoder
        from .video_vae import VideoVAE

        self.cfg = cfg
        self.flavor = get_flavor(cfg.flavor)
        self.video = VideoVAE.for_weights(cfg.weights, cfg.device)
        self.audio = AudioVAE.for_weights(cfg.weights, cfg.device)
        self.text = TextEncoder.for_weights(cfg.weights, cfg.device, text_len=512)
        a, g = self.flavor.args, self.flavor.geometry
        if self.video.z_dim != a.video_channels or self.audio.latent_channels != \
                a.audio_channels or self.text.dim != a.text_dim:
            raise OmniError(
                f"encoders for weights={cfg.weights!r} give video {self.video.z_dim}, audio "
                f"{self.audio.latent_channels}, text {self.text.dim} channels; flavor "
                f"{cfg.flavor} needs {a.video_channels}, {a.audio_channels}, {a.text_dim}")
        if tuple(self.video.stride) != tuple(g.video_stride):
            raise OmniError(f"video VAE stride {self.video.stride} != flavor's "
                            f"{g.video_stride}")

    def null_text(self) -> dict[str, torch.Tensor]:
        from .text_encoder import encode_null_texts

        return encode_null_texts(self.text, self.cfg.video_negative, self.cfg.audio_negative)

    @torch.no_grad()
    def sample(self, row: dict[str, Any]) -> LatentSample:
        from omni_core.captions import read_caption
        from omni_core.media import load_audio, probe, read_frames, read_image
        from omni_core.storage import local_input

        g = self.flavor.geometry
        clip = local_input(row["clip_path"])  # a local copy when the curation is remote
        info = probe(clip)
        if not info.n_frames:
            raise OmniError("clip has no video frames")
        fit = Fit.cover(int(info.width), int(info.height), g.width, g.height)
        clip_fps = float(info.fps or g.fps)
        times = [i / g.fps for i in range(g.frames)]
        if times[-1] > (info.n_frames - 1) / clip_fps + 1e-6:
            raise OmniError(f"clip lasts {info.n_frames / clip_fps:.2f} s, "
                            f"{g.frames / g.fps:.2f} s needed")
        frames = fit.frames(read_frames(clip, [round(t * clip_fps) for t in times],
                                        decoder=self.cfg.decoder))
        n_audio = int(round(g.frames / g.fps * g.sample_rate))
        wav = load_audio(clip, g.sample_rate)[:n_audio]
        wav = np.pad(wav, (0, n_audio - len(wav)))
        video = self._encode_video(frames)
        audio = self.audio.encode(torch.from_numpy(wav)[None].to(self.cfg.device))[0]
        audio = _fit_length(audio.float().cpu(), g.audio_latents)
        refs = [self.video.encode_image(read_image(local_input(p)), g.height, g.width)
                .float().cpu() for p in row["image_paths"]]
        voices = [voice_latents(self.audio, load_audio(local_input(p), g.sample_rate), g,
                                self.cfg.voice_seconds, self.cfg.device)
                  for p in row["audio_paths"]]
        prompt = read_caption(local_input(row["caption_path"])).prompt_text()
        text = self.text.encode([prompt])[0]
        source = None
        if self.cfg.source_video:
            picks = [round(t * clip_fps) for t in times]
            tracks = [interpolate_boxes(fr, bx, int(info.n_frames))[picks]
                      for fr, bx in row["tracks"]]
            source = self._encode_video(grey_heads(frames, tracks, fit, self.cfg.head_expand))
        return LatentSample(
            sample_id=row["sample_id"], video=video, audio=audio, text=text,
            ref_images=torch.cat(refs, dim=1), ref_voices=torch.cat(voices, dim=0),
            voice_lengths=tuple(int(v.shape[0]) for v in voices),
            video_mask=video_mask(g, fit, [None if f is None else round(f / clip_fps * g.fps)
                                           for f in row["mask_frames"]], row["mask_boxes"]),
            audio_mask=audio_mask(g, row["mask_spans"]), source_video=source,
            prompt=prompt, task=row["task"])

    def _encode_video(self, frames: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(frames).permute(3, 0, 1, 2).float() / 127.5 - 1.0
        return self.video.encode(x[None].to(self.cfg.device))[0].float().cpu()


def voice_latents(audio_vae: Any, wav: np.ndarray, geometry: Geometry, seconds: float,
                  device: str) -> torch.Tensor:
    """A voice reference's latents ``(voice_latents, C)``: the middle ``seconds`` of ``wav``
    (zero-padded when shorter) through the audio VAE. Latent extraction and sampling both
    use it, so training and inference see the same slice."""
    want = int(round(seconds * geometry.sample_rate))
    start = max(0, (len(wav) - want) // 2)
    w = wav[start: start + want]
    w = np.pad(w, (0, want - len(w)))
    lat = audio_vae.encode(torch.from_numpy(np.ascontiguousarray(w))[None].to(device))[0]
    return _fit_length(lat.float().cpu(), geometry.voice_latents)


def _fit_length(x: torch.Tensor, n: int) -> torch.Tensor:
    """``(L, C)`` cut or zero-padded to ``n`` rows."""
    if x.shape[0] >= n:
        return x[:n]
    return torch.cat([x, x.new_zeros(n - x.shape[0], x.shape[1])])


# --------------------------------------------------------------------------------------------
# the run


def plan_rows(curation: str) -> list[dict[str, Any]]:
    """One work item per curated sample: its task, absolute media paths (or URLs, for a
    curation output in object storage), masks and the subjects' face tracks (for the RV2AV
    source)."""
    from omni_core.manifests import read_manifest
    from omni_core.storage import exists, join, resolve

    samples = read_manifest(join(curation, "samples.parquet"), "samples")
    refs = read_manifest(join(curation, "references.parquet"), "references").set_index(
        "reference_id")
    clips_file = join(curation, "clips.parquet")
    video_of = (read_manifest(clips_file, "clips").set_index("clip_id").video_id.to_dict()
                if exists(clips_file) else {})
    idents = read_manifest(join(curation, "identities.parquet"), "identities").set_index(
        "identity_id")
    tracks = read_manifest(join(curation, "face_tracks.parquet"), "face_tracks").set_index(
        "track_id")
    rows = []
    for s in samples.itertuples(index=False):
        subj_tracks = []
        for ident in s.identity_ids:
            for tid in (idents.loc[ident].track_ids if ident in idents.index else []):
                if tid in tracks.index:
                    t = tracks.loc[tid]
                    subj_tracks.append(([int(x) for x in t.frame_indices],
                                        [tuple(map(float, b)) for b in t.boxes]))
        used = [refs.loc[r] for r in (*s.image_reference_ids, *s.audio_reference_ids)
                if r in refs.index]
        clip_ids = _unique([s.clip_id, *(str(r.source_clip_id) for r in used)])
        rows.append({
            "sample_id": s.sample_id, "task": s.task,
            # what the held-out check compares (omni_core.heldout); kept in the latent index
            "identity_ids": _unique([*s.identity_ids, *(str(r.identity_id) for r in used)]),
            "clip_ids": clip_ids,
            "video_ids": _unique([video_of[c] for c in clip_ids if c in video_of]),
            "clip_path": resolve(curation, s.clip_path),
            "caption_path": resolve(curation, s.caption_path),
            "image_paths": [resolve(curation, refs.loc[r].path) for r in s.image_reference_ids],
            "audio_paths": [resolve(curation, refs.loc[r].path) for r in s.audio_reference_ids],
            "mask_frames": [None if f is None else int(f) for f in s.mask_frames],
            "mask_boxes": [None if b is None else tuple(map(float, b)) for b in s.mask_boxes],
            "mask_spans": [None if p is None else (float(p[0]), float(p[1]))
                           for p in s.mask_spans],
            "tracks": subj_tracks})
    return rows


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(str(v) for v in values))


def refuse_heldout(rows: list[dict[str, Any]], heldout: list[str], what: str
                   ) -> tuple[list[dict[str, Any]], list[Any]]:
    """``rows`` (:func:`plan_rows`) without the samples that touch a held-out identity of the
    benchmarks ``heldout`` (:mod:`omni_core.heldout`), and the refusals. Every sample
    refused: an OmniError (the run was pointed at a benchmark's own data)."""
    from omni_core.heldout import all_refused_error, load_heldout

    held = load_heldout(heldout)
    if held is None:
        return rows, []
    keep, refused = [], []
    for r in rows:
        hit = held.check(r["sample_id"], r["identity_ids"], r["clip_ids"], r["video_ids"])
        if hit is None:
            keep.append(r)
        else:
            refused.append(hit)
    if rows and not keep:
        raise all_refused_error(refused, what)
    return keep, refused


JOB = "latents"


def config_key(cfg: LatentsConfig) -> str:
    """What the latents depend on (not Ray, resources, the device or the shard size) and the
    encoding stage's code version."""
    from omni_core.jobs import result_key

    d = to_dict(cfg)
    for k in ("ray", "resources", "device", "shard_size", "heldout"):
        d.pop(k, None)
    return result_key(d, {EncodeStage.name: EncodeStage.version})


class EncodeStage(Stage):
    """Encodes each sample into its part (``.safetensors`` beside the sample's result
    record); the first actor also encodes the null texts."""

    name = "latents"

    @classmethod
    def preflight(cls, config: dict[str, Any]) -> None:
        from omni_core.config import from_dict

        Encoders.check(from_dict(LatentsConfig, config).weights)

    def setup(self, config: dict[str, Any]) -> None:
        from omni_core.config import from_dict
        from omni_core.media import check_decoder

        self.cfg = from_dict(LatentsConfig, config)
        check_decoder(self.cfg.decoder)  # this worker can run it (NVDEC: a GPU here)
        self.store = ResultStore(self.out, JOB)
        self.enc = Encoders(self.cfg)
        if not self.store.done("null_text", "null_text", self.job.key):
            rel = self.store.rel("null_text", "null_text", ".safetensors")
            _save(self.out.local(rel, fetch=False), {k: v.contiguous() for k, v in
                                                     self.enc.null_text().items()}, None)
            self._publish(rel)
            self.store.put("null_text", "null_text", self.job.key, {"file": rel},
                           outputs=[rel])

    def process(self, item: WorkItem) -> None:
        s = self.enc.sample(item.data)
        rel = self.store.rel("samples", s.sample_id, ".safetensors")
        _save(self.out.local(rel, fetch=False), s.tensors(),
              {"voice_lengths": json.dumps(list(s.voice_lengths)), "prompt": s.prompt})
        self._publish(rel)
        self.store.put("samples", s.sample_id, self.job.key, {"file": rel}, outputs=[rel])

    def _publish(self, rel: str) -> None:
        """Into a remote output: upload the part and drop this node's copy (the driver
        fetches it back to pack the shards); nothing to do for a local one."""
        self.out.publish(rel)
        self.out.unstage(rel)


def _save(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, str] | None) -> None:
    from safetensors.torch import save_file

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file(tensors, str(tmp), metadata=meta)
    os.replace(tmp, path)


def _read_part(path: Path, sample_id: str) -> LatentSample:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        t = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no iter)
    return LatentSample(sample_id=sample_id, voice_lengths=tuple(json.loads(
        meta["voice_lengths"])), prompt=meta.get("prompt", ""), **t)


def extract_latents(curation: str | os.PathLike[str], out: str | os.PathLike[str],
                    cfg: LatentsConfig, progress: bool = True,
                    verbose: bool = False) -> JobSummary:
    """Latents of every sample of a curation run (a folder or URL) into ``out``, a folder or
    a URL (``s3://...``: the parts and shards are uploaded as they are made, and no node
    keeps them): shards, ``index.parquet``, ``null_text.safetensors``, ``meta.json``,
    ``errors.parquet``, ``summary.json``."""
    from omni_core.heldout import refusal_lines
    from omni_core.jobs import JobContext, collect_setup, run_on_ray, summarize_items
    from omni_core.storage import RunFolder

    t0 = time.perf_counter()
    curation = RunFolder(curation).out
    folder = RunFolder(out)
    folder.root.mkdir(parents=True, exist_ok=True)
    planned = plan_rows(curation)
    rows, refused = refuse_heldout(planned, cfg.heldout, str(curation))
    key = config_key(cfg)
    store = ResultStore(folder, JOB)
    todo = [r for r in rows if not store.done("samples", r["sample_id"], key)]
    if not todo and not store.done("null_text", "null_text", key) and rows:
        todo = rows[:1]  # the null texts need an encoder
    job = JobContext(JOB, folder, key)
    cfg_dict = to_dict(cfg)
    done = run_on_ray(job, [WorkItem(r["sample_id"], r).to_row() for r in todo],
                      [StagePlan(EncodeStage, cfg.resources, {"config": cfg_dict},
                                 unit="samples")], cfg.ray, progress=progress,
                      verbose=verbose)
    items = [WorkItem.from_row(r) for r in done]
    for hit in refused:  # accounted for: an error row each, never encoded
        item = WorkItem(hit.sample_id)
        item.fail("heldout", OmniError(hit.message()))
        items.append(item)
    setup = collect_setup(job)
    store.refresh()  # the workers published their samples
    # into a URL the shards are staged one at a time and uploaded (ShardWriter), and each
    # part is fetched, packed and its local copy dropped: the node never holds the latent set
    writer = ShardWriter(folder, cfg.shard_size, getattr(torch, cfg.storage_dtype))
    written = 0
    for r in rows:  # the task from the sample table (a part does not depend on it)
        rec = store.get("samples", r["sample_id"], key)
        if rec is not None:
            part = _read_part(folder.local(rec["file"]), r["sample_id"])
            folder.unstage(rec["file"])
            writer.add(replace(part, task=r["task"], identity_ids=tuple(r["identity_ids"]),
                               clip_ids=tuple(r["clip_ids"]),
                               video_ids=tuple(r["video_ids"])))
            written += 1
    from safetensors.torch import load_file

    null_rec = store.get("null_text", "null_text", key)
    if null_rec is None:
        raise OmniError("the null texts were not encoded (see errors.parquet)")
    null = load_file(str(folder.local(null_rec["file"])))
    folder.unstage(null_rec["file"])
    fl = get_flavor(cfg.flavor)
    writer.close({k: null[k] for k in NULL_TEXTS}, {
        "flavor": cfg.flavor, "weights": cfg.weights, "config": cfg_dict,
        "geometry": to_dict(fl.geometry), "curation": str(curation)})
    return summarize_items(
        job, items, [EncodeStage], setup, total=len(planned),
        skipped=len(rows) - len(todo), counts={"samples": written, "heldout": len(refused)},
        wall_s=time.perf_counter() - t0,
        details={"flavor": cfg.flavor, "written": written, "curation": str(curation),
                 "heldout": {"benchmarks": list(cfg.heldout), "refused": len(refused)}},
        config=cfg_dict, weights=cfg.weights, inputs=[str(curation)],
        notes=[*refusal_lines(refused, len(planned), str(curation)),
               f"{written} samples in the shards of {folder.out}"])
