"""``omni latents``: curation manifests -> latent shards for ``omni train``."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "latents", help="encode curated samples into latent shards (Ray Data; once)",
        description="Encode every sample of a curation run (video with the Wan2.2 VAE, audio "
        "and voices with the MMAudio VAE, captions with umT5, reference masks in latent "
        "space, the masked RV2AV source) into OUT/shard-*.safetensors + OUT/index.parquet, "
        "with each sample's task (r2av|rv2av|ra2v) from the samples table. "
        "A rerun skips what is done; failures are rows of OUT/errors.parquet.")
    p.add_argument("--curation", required=True, help="curation folder or URL (s3://...) with "
                   "samples.parquet (in-pair, cross-pair or the stage-3 sample table)")
    p.add_argument("--out", required=True, help="latent folder or URL (s3://...: shards are "
                   "uploaded as they are written, `omni train` streams them from there)")
    p.add_argument("--flavor", default="debug", help="model flavor (geometry and channels)")
    p.add_argument("--weights", help="'debug', 'random' or a weights folder (default debug)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a LatentsConfig value, e.g. source_video=false")
    p.add_argument("--heldout", action="append", default=[], metavar="BENCH",
                   help="a benchmark folder made by `omni benchmark build` (or its "
                   "heldout.parquet) whose held-out identities must not be trained on: their "
                   "samples are refused, each an error row (repeatable)")
    p.add_argument("--address", help="Ray cluster to join (host:port or auto)")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.add_argument("--verbose", action="store_true",
                   help="also show Ray's own log lines and the workers' output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from omni_core.config import load_config
    from omni_model.latents import LatentsConfig, extract_latents

    overrides = [f"flavor={args.flavor}", *args.set]
    if args.weights:
        overrides.append(f"weights={args.weights}")
    if args.address:
        overrides.append(f"ray.address={args.address}")
    cfg = load_config(LatentsConfig, None, overrides)
    if args.heldout:
        cfg = replace(cfg, heldout=[*cfg.heldout, *args.heldout])
    summary = extract_latents(args.curation, args.out, cfg, progress=not args.quiet,
                              verbose=args.verbose)
    print("\n".join(summary.lines()))
    return 0
