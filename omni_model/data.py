"""Latent shards: what latent extraction writes once and the trainer streams.

A latent folder holds

* ``index.parquet``: one row per sample (:data:`INDEX_COLUMNS`): its id, the shard file, the
  number of identities, the voice reference lengths, the latent shapes, whether a
  source-video latent is stored (for RV2AV), the prompt text and the sample's training task
  (:data:`TASKS`, from the curation's ``samples`` row: stage 3's 4 : 3 : 3 mix is written
  there);
* ``shard-00000.safetensors``, ...: each sample's tensors under ``<sample id>/<name>``
  (:data:`TENSORS`), in float32 or bfloat16;
* ``null_text.safetensors``: the text embeddings the condition dropout and guidance use in
  place of the caption (``empty``; ``video_negative`` and ``audio_negative``, the release's
  negative prompts);
* ``meta.json``: the flavor geometry and encoders it was made with.

The trainer reads it through :class:`LatentDataset`: an epoch is a seeded permutation cut
into micro-batches of one shape and one task each (samples with the same task, number of
identities, voice lengths and latent sizes are batched together, so no padding or attention
mask is needed and each micro-batch trains one task), and a position (``epoch``,
micro-batches consumed) says exactly where a run stopped.

The folder may be a URL (``s3://bucket/latents``, any fsspec location, as curation's outputs;
:mod:`omni_core.storage`): :class:`ShardWriter` stages each shard on the local disk, uploads
it and deletes the local copy, the index last; :class:`LatentDataset` reads the index and the
null texts from the URL and each rank downloads only the shards its own micro-batches need,
into a bounded cache (:class:`~omni_model.shard_cache.ShardCache`). No node ever needs the
whole latent set on its disk, and the order of the micro-batches does not depend on where the
folder is.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from omni_core.errors import OmniError
from omni_core.storage import RunFolder, as_run_folder, is_remote
from omni_core.tasks import TASKS, deal_tasks

INDEX_COLUMNS = ("sample_id", "shard", "n_refs", "voice_lengths", "video_shape",
                 "audio_len", "has_source", "prompt", "task")
#: the training tasks (paper.md): references only; + the masked source video; + the audio
#: per-sample tensors: video (C, F, H, W) and audio (L, C) targets, text (Lt, D) (the
#: caption's embedding, unpadded), ref_images (C, K, H, W), ref_voices (sum L_k, C),
#: video_mask (F, H, W) and audio_mask (L,) (1 = where a reference was cut from: no loss in
#: stage 1), source_video (C, F, H, W) (latents of the masked target, for RV2AV; optional)
TENSORS = ("video", "audio", "text", "ref_images", "ref_voices", "video_mask", "audio_mask",
           "source_video")
NULL_TEXTS = ("empty", "video_negative", "audio_negative")
#: what the sample shows, by the curation's keys (its subjects' and references' identities,
#: its clip and the reference clips, their videos): ``omni train`` checks them against the
#: held-out identities of a benchmark (omni_core.heldout). Written by ``omni latents``;
#: optional on reading (an older index, or latents not made from a curation, lack them)
KEY_COLUMNS = ("identity_ids", "clip_ids", "video_ids")


@dataclass
class LatentSample:
    sample_id: str
    video: torch.Tensor
    audio: torch.Tensor
    text: torch.Tensor
    ref_images: torch.Tensor
    ref_voices: torch.Tensor
    voice_lengths: tuple[int, ...]
    video_mask: torch.Tensor
    audio_mask: torch.Tensor
    source_video: torch.Tensor | None = None
    prompt: str = ""
    task: str = "r2av"
    #: the curation keys the sample shows (:data:`KEY_COLUMNS`; the held-out check)
    identity_ids: tuple[str, ...] = ()
    clip_ids: tuple[str, ...] = ()
    video_ids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        c, f, h, w = self.video.shape
        k = self.ref_images.shape[1]
        problems = []
        if self.task not in TASKS:
            problems.append(f"unknown task {self.task!r} (one of {', '.join(TASKS)})")
        if self.ref_images.shape != (c, k, h, w):
            problems.append(f"ref_images {tuple(self.ref_images.shape)} vs video {c}x?x{h}x{w}")
        if len(self.voice_lengths) != k:
            problems.append(f"{k} identity images but {len(self.voice_lengths)} voices")
        if self.ref_voices.shape != (sum(self.voice_lengths), self.audio.shape[1]):
            problems.append(f"ref_voices {tuple(self.ref_voices.shape)} vs voice lengths "
                            f"{self.voice_lengths}")
        if self.video_mask.shape != (f, h, w):
            problems.append(f"video_mask {tuple(self.video_mask.shape)} vs ({f}, {h}, {w})")
        if self.audio_mask.shape != (self.audio.shape[0],):
            problems.append(f"audio_mask {tuple(self.audio_mask.shape)}")
        if self.source_video is not None and self.source_video.shape != self.video.shape:
            problems.append(f"source_video {tuple(self.source_video.shape)}")
        if problems:
            raise OmniError(f"latent sample {self.sample_id}: " + "; ".join(problems))

    @property
    def n_refs(self) -> int:
        return int(self.ref_images.shape[1])

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {n: getattr(self, n) for n in TENSORS if getattr(self, n) is not None}
        return {n: t.contiguous() for n, t in out.items()}


class ShardWriter:
    """Writes samples into ``folder`` as shards of ``shard_size`` samples, then the index.

    ``folder`` is a path, a URL (``s3://...``) or a :class:`~omni_core.storage.RunFolder`.
    Each shard is written to a temporary name and renamed; into a URL it is staged on this
    node, uploaded and its local copy deleted (the node holds one shard at a time). The index
    goes last, so a folder with an ``index.parquet`` is complete; an index already there is
    deleted first (the shards under it are about to change). ``dtype`` is the storage dtype
    of float tensors (masks stay float32 0/1)."""

    def __init__(self, folder: str | os.PathLike[str] | RunFolder, shard_size: int = 64,
                 dtype: torch.dtype = torch.float32) -> None:
        self.out = as_run_folder(folder)
        self.out.root.mkdir(parents=True, exist_ok=True)
        self.out.remove("index.parquet")
        self.shard_size = shard_size
        self.dtype = dtype
        self._pending: list[LatentSample] = []
        self._rows: list[dict[str, Any]] = []
        self._shards = 0
        self._ids: set[str] = set()

    @property
    def folder(self) -> Path | str:
        """Where the latent set goes: a local folder, or a URL."""
        return self.out.url() if self.out.remote else Path(self.out.out)

    def add(self, sample: LatentSample) -> None:
        if sample.sample_id in self._ids:
            raise OmniError(f"duplicate sample id {sample.sample_id}")
        self._ids.add(sample.sample_id)
        self._pending.append(sample)
        if len(self._pending) >= self.shard_size:
            self._flush()

    def _put(self, name: str, write: Any) -> None:
        """``write(path)`` writes file ``name`` at a temporary path; it is renamed into place
        and, for a URL, uploaded and its local copy deleted."""
        dest = self.out.local(name, fetch=False)
        tmp = dest.with_name(f".{name}.tmp")
        write(tmp)
        os.replace(tmp, dest)
        self.out.publish(name)
        self.out.unstage(name)

    def _flush(self) -> None:
        from safetensors.torch import save_file

        if not self._pending:
            return
        name = f"shard-{self._shards:05d}.safetensors"
        blob = {}
        for s in self._pending:
            for k, t in s.tensors().items():
                keep = t.float() if k.endswith("_mask") else t.to(self.dtype)
                blob[f"{s.sample_id}/{k}"] = keep.contiguous()
            self._rows.append({
                "sample_id": s.sample_id, "shard": name, "n_refs": s.n_refs,
                "voice_lengths": list(s.voice_lengths), "video_shape": list(s.video.shape),
                "audio_len": int(s.audio.shape[0]), "has_source": s.source_video is not None,
                "prompt": s.prompt, "task": s.task,
                **{k: list(getattr(s, k)) for k in KEY_COLUMNS}})
        self._put(name, lambda p: save_file(blob, str(p)))
        self._shards += 1
        self._pending = []

    def close(self, null_text: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path | str:
        """Flush, then write ``null_text.safetensors``, ``meta.json`` and the index; where the
        index is (a path, or a URL)."""
        from safetensors.torch import save_file

        missing = [n for n in NULL_TEXTS if n not in null_text]
        if missing:
            raise OmniError(f"null text embeddings missing: {', '.join(missing)}")
        self._flush()
        self._put("null_text.safetensors", lambda p: save_file(
            {k: v.float().contiguous() for k, v in null_text.items()}, str(p)))
        self._put("meta.json", lambda p: p.write_text(json.dumps(meta, indent=2,
                                                                 sort_keys=True)))
        index = pd.DataFrame(self._rows, columns=[*INDEX_COLUMNS, *KEY_COLUMNS])
        index = index.sort_values("sample_id", kind="stable").reset_index(drop=True)
        self._put("index.parquet", lambda p: index.to_parquet(p, index=False))
        url = self.out.url("index.parquet")
        return url if self.out.remote else Path(url)


def read_index(folder: str | os.PathLike[str]) -> pd.DataFrame:
    """The latent index of a folder or URL (``OmniError`` when it has none: not a latent
    folder, or one whose extraction did not finish)."""
    import io

    from omni_core.storage import join, read_bytes

    where = join(folder, "index.parquet")
    try:
        index = pd.read_parquet(io.BytesIO(read_bytes(where)))
    except FileNotFoundError:
        raise OmniError(f"{folder}: no index.parquet (not a latent folder, or extraction did "
                        "not finish: run `omni latents` again)") from None
    missing = [c for c in INDEX_COLUMNS if c not in index.columns]
    if missing:
        raise OmniError(f"{folder}: the latent index lacks {', '.join(missing)} (written by an "
                        "older `omni latents`: run it again; finished samples are reused)")
    return index


@dataclass
class Batch:
    """A micro-batch of one shape and one task. ``text`` is padded with zeros to the model's
    text length (the release attends to all of it, padding included)."""

    sample_ids: list[str]
    task: str  # r2av | rv2av | ra2v: every sample's (the micro-batch trains this task)
    video: torch.Tensor  # (B, C, F, H, W)
    audio: torch.Tensor  # (B, L, C)
    text: torch.Tensor  # (B, text_len, D)
    ref_images: torch.Tensor  # (B, C, K, H, W)
    ref_voices: torch.Tensor  # (B, sum L_k, C)
    voice_lengths: tuple[int, ...]
    video_mask: torch.Tensor  # (B, F, H, W)
    audio_mask: torch.Tensor  # (B, L)
    source_video: torch.Tensor | None  # (B, C, F, H, W) when every sample has one

    @property
    def size(self) -> int:
        return len(self.sample_ids)

    def to(self, device: torch.device | str) -> Batch:
        kw = {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v)
              for k, v in vars(self).items()}
        return Batch(**kw)


def pad_text(t: torch.Tensor, length: int) -> torch.Tensor:
    """``(Lt, D)`` -> ``(length, D)``: zero-padded, or cut."""
    if t.shape[0] >= length:
        return t[:length]
    return torch.cat([t, t.new_zeros(length - t.shape[0], t.shape[1])])


@dataclass
class Position:
    """Where a run is in the data: ``epoch`` and micro-batches of that epoch consumed."""

    epoch: int = 0
    step: int = 0

    def to_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "step": self.step}


#: the default bound of a rank's cache of a remote latent set's shards
DEFAULT_CACHE_BYTES = 8 << 30


@dataclass
class LatentDataset:
    """Seeded micro-batches over a latent folder, bucketed by task and shape.

    ``rank``/``world`` split every group of ``world`` consecutive micro-batches between data
    parallel ranks, so each optimizer step sees ``world x micro_batch x accumulation``
    samples; the order depends only on ``seed`` and the epoch, never on timing.

    ``folder`` may be a URL (``s3://...``): the index and the null texts are read from it,
    and the shards this rank's micro-batches need are downloaded as they are needed into
    ``cache_dir`` (default ``cache_root()/latents/<hash of the URL>/rank-<rank>``), which
    holds at most ``cache_bytes`` and, when set, ``cache_shards`` shards
    (:class:`~omni_model.shard_cache.ShardCache`). A local folder is read in place.
    """

    folder: Path | str
    micro_batch: int
    text_len: int
    seed: int = 0
    rank: int = 0
    world: int = 1
    drop_last_partial: bool = True
    cache_dir: str | os.PathLike[str] | None = None
    cache_bytes: int = DEFAULT_CACHE_BYTES
    cache_shards: int = 0
    index: pd.DataFrame = field(init=False)
    null_text: dict[str, torch.Tensor] = field(init=False)

    def __post_init__(self) -> None:
        from safetensors.torch import load as load_bytes

        from omni_core.storage import join, read_bytes

        self.folder = (RunFolder(self.folder).out if is_remote(self.folder)
                       else Path(self.folder))
        self.index = read_index(self.folder)
        if self.index.empty:
            raise OmniError(f"{self.folder}: the latent index has no samples")
        unknown = sorted(set(self.index.task) - set(TASKS))
        if unknown:
            raise OmniError(f"{self.folder}: unknown task(s) {', '.join(map(str, unknown))} in "
                            f"the latent index (one of {', '.join(TASKS)})")
        bare = self.index.sample_id[(self.index.task == "rv2av") & ~self.index.has_source]
        if len(bare):
            ids = ", ".join(map(str, bare[:10])) + (" ..." if len(bare) > 10 else "")
            raise OmniError(
                f"{self.folder}: {len(bare)} rv2av sample(s) without a source-video latent "
                f"({ids}): run `omni latents` with source_video on (the default)")
        try:
            self.null_text = load_bytes(read_bytes(join(self.folder, "null_text.safetensors")))
        except FileNotFoundError:
            raise OmniError(f"{self.folder}: no null_text.safetensors (not a latent folder, or "
                            "extraction did not finish: run `omni latents` again)") from None
        self._open: dict[str, Any] = {}
        self._held: dict[str, Path] = {}  # local files of the micro-batch being read
        self.cache = self._remote_cache() if self.remote else None

    @property
    def remote(self) -> bool:
        """Whether the latent set is at a URL (its shards are fetched into :attr:`cache`)."""
        return isinstance(self.folder, str)

    def _remote_cache(self) -> Any:
        """This rank's shard cache; every shard the index names must be at the URL (checked
        once here, so that a missing shard stops the run now rather than hours in)."""
        import hashlib

        from omni_core.storage import cache_root, file_names

        from .shard_cache import ShardCache

        url = str(self.folder)
        gone = sorted(set(self.index.shard) - file_names(url))
        if gone:
            raise OmniError(f"{url}: {len(gone)} shard(s) named by the index are missing "
                            f"({', '.join(gone[:5])}{' ...' if len(gone) > 5 else ''}): "
                            "the latent set is incomplete, run `omni latents` again")
        folder = self.cache_dir
        if folder is None:
            digest = hashlib.sha256(url.encode()).hexdigest()[:16]
            folder = cache_root() / "latents" / digest / f"rank-{self.rank}"
        return ShardCache(url, folder, max_bytes=self.cache_bytes, max_shards=self.cache_shards,
                          on_evict=self._close)

    def _close(self, shard: str) -> None:
        """Forget the open handle of a shard about to be deleted from the cache."""
        self._open.pop(shard, None)

    def drop(self, sample_ids: Sequence[str]) -> None:
        """Leave these samples out (e.g. refused as held out); an error when none is left."""
        gone = set(sample_ids)
        self.index = self.index[~self.index.sample_id.isin(gone)].reset_index(drop=True)
        if self.index.empty:
            raise OmniError(f"{self.folder}: no sample left to train on")

    def _bucket_key(self, row: pd.Series) -> tuple:
        return (str(row.task), int(row.n_refs), tuple(int(x) for x in row.voice_lengths),
                tuple(int(x) for x in row.video_shape), int(row.audio_len))

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """Micro-batches of row indices for ``epoch``, all ranks', in order."""
        rng = np.random.default_rng((self.seed, epoch))
        order = rng.permutation(len(self.index))
        open_: dict[tuple, list[int]] = {}
        batches: list[list[int]] = []
        for i in order:
            key = self._bucket_key(self.index.iloc[int(i)])
            cur = open_.setdefault(key, [])
            cur.append(int(i))
            if len(cur) == self.micro_batch:
                batches.append(cur)
                open_[key] = []
        if not self.drop_last_partial:
            batches += [b for b in open_.values() if b]
        usable = len(batches) - len(batches) % self.world
        if usable == 0:
            raise OmniError(f"{self.folder}: {len(self.index)} samples make no full round of "
                            f"{self.world} micro-batches of {self.micro_batch}")
        return batches[:usable]

    def steps_per_epoch(self) -> int:
        """Micro-batches per epoch for one rank."""
        return len(self.epoch_batches(0)) // self.world

    def iterate(self, start: Position) -> Iterator[tuple[Position, Batch]]:
        """This rank's micro-batches from ``start`` on, forever (epoch after epoch); each
        comes with the position just after it."""
        epoch, step = start.epoch, start.step
        while True:
            mine = self.epoch_batches(epoch)[self.rank::self.world]
            for i in range(step, len(mine)):
                yield Position(epoch, i + 1), self.load(mine[i])
            epoch, step = epoch + 1, 0

    def _tensor(self, shard: str, key: str) -> torch.Tensor:
        from safetensors import safe_open

        f = self._open.get(shard)
        if f is None:
            path = self._held[shard] if self.cache is not None else Path(self.folder) / shard
            f = self._open[shard] = safe_open(str(path), framework="pt")
        return f.get_tensor(key).float()

    def load(self, rows: Sequence[int]) -> Batch:
        recs = [self.index.iloc[i] for i in rows]
        if self.cache is not None:
            # every shard of the micro-batch local at once: none is evicted while it is read
            self._held = self.cache.hold([str(r.shard) for r in recs])
            for shard in [s for s in self._open if s not in self._held]:
                self._close(shard)

        def stack(name: str) -> torch.Tensor:
            return torch.stack([self._tensor(r.shard, f"{r.sample_id}/{name}") for r in recs])

        tasks = {str(r.task) for r in recs}
        if len(tasks) != 1:
            raise OmniError(f"a micro-batch mixes tasks {sorted(tasks)}")
        has_source = all(bool(r.has_source) for r in recs)
        return Batch(
            sample_ids=[str(r.sample_id) for r in recs], task=tasks.pop(),
            video=stack("video"), audio=stack("audio"),
            text=torch.stack([pad_text(self._tensor(r.shard, f"{r.sample_id}/text"),
                                       self.text_len) for r in recs]),
            ref_images=stack("ref_images"), ref_voices=stack("ref_voices"),
            voice_lengths=tuple(int(x) for x in recs[0].voice_lengths),
            video_mask=stack("video_mask"), audio_mask=stack("audio_mask"),
            source_video=stack("source_video") if has_source else None)

    def null(self, name: str, batch: int) -> torch.Tensor:
        """A null text embedding, padded and repeated: ``(batch, text_len, D)``."""
        return pad_text(self.null_text[name], self.text_len)[None].expand(batch, -1, -1)


def prefetch(it: Iterator[Any], depth: int = 2) -> Iterator[Any]:
    """``it``'s items, in order, read ahead by a background thread (``depth`` at most), so
    reading and stacking the next micro-batch overlaps the current step. An exception in the
    reader is raised here, at the item where it happened."""
    import queue
    import threading

    if depth <= 0:
        yield from it
        return
    q: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                q.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        try:
            for item in it:
                if not put(("item", item)):
                    return
            put(("end", None))
        except BaseException as exc:  # handed to the consumer
            put(("error", exc))

    t = threading.Thread(target=read, daemon=True, name="latent-prefetch")
    t.start()
    try:
        while True:
            kind, value = q.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        # The reader is joined, not left running: a daemon thread inside torch's C++ code
        # while the interpreter exits aborts the process ("terminate called without an
        # active exception"). It stops at its next put, after at most the item in hand.
        stop.set()
        t.join()


def write_dummy_latents(folder: str | os.PathLike[str], flavor: str = "debug", n: int = 8,
                        seed: int = 0, identities: Sequence[int] = (1, 2),
                        with_source: bool = True,
                        tasks: Sequence[str] | Mapping[str, float] | str = "r2av",
                        shard_size: int = 4) -> Path | str:
    """A small valid latent folder (or set at a URL) in one line, for tests and trying the
    trainer: ``n``
    samples of the flavor's geometry, smooth random latents (a few low-frequency components
    per sample, so there is structure to learn), identities cycling through ``identities``,
    a reference mask on one latent frame region and one audio span per identity, tasks from
    ``tasks`` (one task, a sequence cycled through, or a mix such as ``{"r2av": 4, "rv2av":
    3, "ra2v": 3}`` dealt out in proportion, see :func:`deal_tasks`), ``shard_size`` samples
    a shard. Not data. Returns the folder (a Path) or the URL."""
    from .flavors import get_flavor

    fl = get_flavor(flavor)
    a, g = fl.args, fl.geometry
    f, (h, w) = g.latent_frames, g.latent_size
    la = g.audio_latents
    gen = torch.Generator().manual_seed(seed)

    def smooth(*shape: int) -> torch.Tensor:
        base = torch.randn(*shape[:-2], 2, 2, generator=gen)
        return torch.nn.functional.interpolate(
            base.reshape(-1, 1, 2, 2), size=shape[-2:], mode="bilinear",
            align_corners=True).reshape(shape)

    if isinstance(tasks, str):
        tasks = (tasks,)
    per_sample = (deal_tasks(tasks, n) if isinstance(tasks, Mapping)
                  else [tasks[i % len(tasks)] for i in range(n)])
    writer = ShardWriter(folder, shard_size=shard_size)
    for i in range(n):
        k = identities[i % len(identities)]
        video = smooth(a.video_channels, f, h, w)
        audio = smooth(1, 1, la, a.audio_channels)[0, 0]
        vm = torch.zeros(f, h, w)
        am = torch.zeros(la)
        for j in range(k):
            vm[j % f, : h // 2, j * (w // k): (j + 1) * (w // k)] = 1.0
            am[j * g.voice_latents: (j + 1) * g.voice_latents] = 1.0
        writer.add(LatentSample(
            sample_id=f"dummy-{i:04d}", video=video, audio=audio,
            text=torch.randn(5 + i % 3, a.text_dim, generator=gen),
            ref_images=smooth(a.video_channels, k, h, w),
            ref_voices=smooth(1, 1, k * g.voice_latents, a.audio_channels)[0, 0],
            voice_lengths=(g.voice_latents,) * k, video_mask=vm, audio_mask=am,
            source_video=video * (1 - vm)[None] if with_source else None,
            prompt=f"dummy sample {i}", task=per_sample[i]))
    null = {name: torch.randn(3, a.text_dim, generator=gen) for name in NULL_TEXTS}
    writer.close(null, {"flavor": flavor, "dummy": True, "seed": seed})
    return writer.out.out if writer.out.remote else Path(folder)
