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
    ip.add_argument("--weights", help="the paper's checkpoints: a weights folder, or the random "
                    "twins by name ('debug', 'random'); see also --set models=auto|paper|lite")
    ip.add_argument("--quiet", action="store_true", help="no progress display")
    ip.add_argument("--verbose", action="store_true",
                    help="also show Ray's own log lines and the workers' output")
    ip.set_defaults(func=run)
    cp = kinds.add_parser(
        "crosspair", help="in-pair runs -> cross-pair (stage 2) and stage-3 samples",
        description="Identity retrieval across clips (ArcFace database, verified matches), a "
        "clean cloned voice per speaker (zero-shot TTS, ClearerVoice, speaker and WER check), "
        "cross-pair samples in OUT (read by `omni latents`), the stage-3 table with R2AV : "
        "RV2AV : RA2V in the configured ratio in OUT/stage3, and OUT/report.html. Every "
        "in-pair sample ends in OUT/crosspair_sources.parquet, every failed voice in "
        "OUT/errors.parquet; a rerun resumes where a killed run stopped.")
    cp.add_argument("--inpair", required=True, action="append", metavar="RUN",
                    help="output folder of `omni curate inpair` (repeatable)")
    cp.add_argument("--out", required=True, help="output folder")
    cp.add_argument("--config", help="YAML config (default: the built-in defaults, "
                    "configs/curate/crosspair.yaml)")
    cp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config value, e.g. clone.backend=f5-tts (repeatable)")
    cp.add_argument("--address", help="Ray cluster to join (host:port or auto); "
                    "default: an embedded local cluster")
    cp.add_argument("--weights", help="'debug' (tiny random models) or a weights folder")
    cp.add_argument("--quiet", action="store_true", help="no progress display")
    cp.add_argument("--verbose", action="store_true",
                    help="also show Ray's own log lines and the workers' output")
    cp.set_defaults(func=run_crosspair)
    sp = kinds.add_parser("score", help="compare a curation run with the sample corpus truth",
                          description="For a run of `omni curate inpair` on `omni samples "
                          "make`'s corpus: DER, speaker-face association, transcript WER, face "
                          "detection recall and where every input went, per talking file and "
                          "overall. For a run of `omni curate crosspair` on such runs: identity "
                          "retrieval precision and recall (shown in its report).")
    sp.add_argument("--run", required=True,
                    help="output folder of `omni curate inpair` or `omni curate crosspair`")
    sp.add_argument("--corpus", required=True, help="the sample corpus the run curated")
    sp.add_argument("--json", help="where to write the score (default: RUN/score.json)")
    sp.add_argument("--collar", type=float, default=0.0,
                    help="DER collar: total seconds ignored around each reference boundary "
                    "(half each side; default 0)")
    sp.add_argument("--skip-overlap", action="store_true",
                    help="DER: do not score overlapped reference speech")
    sp.set_defaults(func=run_score)


def _overrides(args: argparse.Namespace) -> list[str]:
    """``--set`` values, then ``--address`` and ``--weights`` as config overrides."""
    overrides = list(args.set)
    if args.address:
        overrides.append(f"ray.address={args.address}")
    if args.weights:
        overrides.append(f"weights={args.weights}")
    return overrides


def run(args: argparse.Namespace) -> int:
    from omni_core.config import load_config
    from pipelines.inpair.config import InpairConfig
    from pipelines.inpair.dag import run_inpair

    cfg = load_config(InpairConfig, args.config, _overrides(args))
    summary = run_inpair(args.input, args.out, cfg, progress=not args.quiet,
                         verbose=args.verbose)
    print("\n".join(summary.lines()))
    return 0


def run_crosspair(args: argparse.Namespace) -> int:
    from omni_core.config import load_config
    from pipelines.crosspair.config import CrosspairConfig
    from pipelines.crosspair.dag import run_crosspair as run_dag

    cfg = load_config(CrosspairConfig, args.config, _overrides(args))
    summary = run_dag(args.inpair, args.out, cfg, progress=not args.quiet,
                      verbose=args.verbose)
    print("\n".join(summary.lines()))
    return 0


def run_score(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from omni_core.errors import OmniError
    from omni_core.jobs import read_summary
    from pipelines.inpair.score import ScoreOptions, score_json, score_run

    path = Path(args.json) if args.json else Path(args.run) / "score.json"
    if not Path(args.run).is_dir():
        raise OmniError(f"run folder not found: {args.run}")
    kind = read_summary(args.run)["job"]  # what the run says it is, never a guess
    if kind == "crosspair":
        from pipelines.crosspair.report import write_report
        from pipelines.crosspair.score import lines, score_crosspair

        result = score_crosspair(args.run, args.corpus)
        print("\n".join(lines(result)))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2) + "\n")
        print(f"  score written to {path}")
        if path == Path(args.run) / "score.json":
            print(f"  report updated: {write_report(args.run)}")
        return 0
    if kind != "inpair":
        raise OmniError(f"{args.run} is a {kind} run: `omni curate score` scores in-pair and "
                        f"cross-pair curation runs")
    score = score_run(args.run, args.corpus,
                      ScoreOptions(collar=args.collar, skip_overlap=args.skip_overlap))
    print("\n".join(score.lines()))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(score_json(score), indent=2) + "\n")
    print(f"  score written to {path}")
    return 0
