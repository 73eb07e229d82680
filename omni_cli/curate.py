"""``omni curate inpair``: the in-pair curation DAG on Ray (embedded, or a cluster via
``--address`` / ``ray job submit``); ``omni curate score``: a run of it on the sample corpus
compared with the corpus's ground truth."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "curate", help="build training data from raw talking videos (Ray Data DAGs)",
        description="Curation DAGs. `inpair` turns a folder of raw videos into in-pair "
        "training samples (clips, who-speaks-when, identity and timbre references with their "
        "masks, structured captions) and OUT/report.html; every input ends up processed "
        "or as a row of OUT/errors.parquet; a rerun resumes where a killed run stopped.")
    kinds = p.add_subparsers(dest="kind", metavar="KIND", required=True)
    ip = kinds.add_parser("inpair", help="raw videos -> in-pair training samples")
    ip.add_argument("--input", required=True, help="folder of raw videos (or one file), or a "
                    "URL such as s3://bucket/videos (credentials: the standard AWS "
                    "environment/config)")
    ip.add_argument("--out", required=True, help="output folder (manifests, media, parts), or "
                    "a URL such as s3://bucket/run (written through a local staging folder)")
    ip.add_argument("--config", help="YAML config (default: the built-in defaults)")
    ip.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config value, e.g. clip.fps=25 (repeatable)")
    ip.add_argument("--address", help="Ray cluster to join (host:port or auto); "
                    "default: an embedded local cluster")
    ip.add_argument("--weights", help="'debug' (tiny random models) or a weights folder")
    ip.add_argument("--quiet", action="store_true", help="no progress bars")
    ip.set_defaults(func=run)
    sp = kinds.add_parser("score", help="compare a curation run with the sample corpus truth",
                          description="DER, speaker-face association, transcript WER, face "
                          "detection recall and where every input went, per talking file and "
                          "overall, for a run of `omni curate inpair` on `omni samples make`'s "
                          "corpus.")
    sp.add_argument("--run", required=True, help="output folder of `omni curate inpair`")
    sp.add_argument("--corpus", required=True, help="the sample corpus the run curated")
    sp.add_argument("--json", help="where to write the score (default: RUN/score.json)")
    sp.add_argument("--collar", type=float, default=0.0,
                    help="DER collar: total seconds ignored around each reference boundary "
                    "(half each side; default 0)")
    sp.add_argument("--skip-overlap", action="store_true",
                    help="DER: do not score overlapped reference speech")
    sp.set_defaults(func=run_score)


def run(args: argparse.Namespace) -> int:
    from omni_core.config import load_config
    from pipelines.inpair.config import InpairConfig
    from pipelines.inpair.dag import run_inpair

    overrides = list(args.set)
    if args.address:
        overrides.append(f"ray.address={args.address}")
    if args.weights:
        overrides.append(f"weights={args.weights}")
    cfg = load_config(InpairConfig, args.config, overrides)
    summary = run_inpair(args.input, args.out, cfg, progress=not args.quiet)
    print("\n".join(summary.lines()))
    return 0


def run_score(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from pipelines.inpair.score import ScoreOptions, score_json, score_run

    score = score_run(args.run, args.corpus,
                      ScoreOptions(collar=args.collar, skip_overlap=args.skip_overlap))
    print("\n".join(score.lines()))
    path = Path(args.json) if args.json else Path(args.run) / "score.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(score_json(score), indent=2) + "\n")
    print(f"  score written to {path}")
    return 0
