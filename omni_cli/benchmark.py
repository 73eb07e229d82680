"""``omni benchmark``: IDBench-Omni instances (fixtures from the sample corpus, import)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "benchmark", help="build a benchmark from curated data, fixtures, or import one",
        description="IDBench-Omni instances. `build` draws held-out persons from in-pair "
        "curation runs and writes their clips as R2AV, RV2AV and RA2V instances in the "
        "released layout, with heldout.parquet for `omni latents/train --heldout`; "
        "`fixtures` writes one- and two-person test cases "
        "in the released layout from the sample corpus, with the corpus clips as predictions; "
        "`import` turns a released-layout folder into a bench_instances Parquet manifest; "
        "`run` compares models on a benchmark.")
    bsub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    bd = bsub.add_parser(
        "build", help="a benchmark from curation runs, held out of training by identity",
        description="Draw held-out persons (seeded) from in-pair curation runs (the same "
        "person across videos: the verified identity matches of a cross-pair run), take every "
        "clip showing them as benchmark instances in the released layout (<set>/imgs, audios, "
        "captions; videos/<id>.mp4 = the masked source of an RV2AV instance, "
        "driving_audios/<id>.wav = the driving audio of an RA2V instance; sets oneip, twoip, "
        "threeip by number of people) plus bench_instances.parquet, and record the held-out "
        "identities in B/heldout.parquet (give B to `omni latents --heldout` and `omni "
        "train --heldout`).")
    bd.add_argument("--curation", action="append", required=True, metavar="RUN",
                    help="an in-pair curation run (`omni curate inpair`; repeatable)")
    bd.add_argument("--crosspair", metavar="XRUN",
                    help="a cross-pair run (`omni curate crosspair`) over those runs: its "
                    "identity matches say who is the same person across videos")
    bd.add_argument("--out", required=True, metavar="B", help="benchmark folder to write")
    who = bd.add_mutually_exclusive_group()
    who.add_argument("--persons", type=int, help="how many persons to hold out")
    who.add_argument("--fraction", type=float, default=0.1,
                     help="fraction of the persons with a sample to hold out (default 0.1)")
    bd.add_argument("--seed", type=int, default=0, help="the draw's seed (default 0)")
    bd.add_argument("--mix", default="r2av=2,rv2av=1,ra2v=1",
                    help="task ratio per set (default: the paper's 100:50:50)")
    bd.add_argument("--every-task", action="store_true",
                    help="one instance per task of the mix for every benchmark sample")
    bd.add_argument("--costars", choices=("holdout", "keep"), default="holdout",
                    help="people seen in a benchmark clip beside a held-out person: held out "
                    "too (default), or kept for training in their other clips")
    bd.add_argument("--head-expand", type=float, default=1.6,
                    help="RV2AV mask: face box widened this many times (as omni latents)")
    bd.add_argument("--quiet", action="store_true", help="no progress display")
    bd.set_defaults(func=run_build)
    fx = bsub.add_parser("fixtures", help="fixtures in the released layout from the corpus")
    fx.add_argument("out", metavar="OUT")
    fx.add_argument("--corpus", required=True, help="a folder made by `omni samples make`")
    fx.add_argument("--tasks", default="r2av",
                    help="comma-separated: r2av, rv2av (masked source video), ra2v (driving "
                    "audio) (default r2av)")
    fx.add_argument("--people", default="1,2",
                    help="comma-separated people per instance: 1, 2, 3 (default 1,2)")
    fx.set_defaults(func=run_fixtures)
    im = bsub.add_parser("import", help="released layout -> bench_instances .parquet")
    im.add_argument("bench", metavar="BENCH")
    im.add_argument("out", metavar="OUT.parquet")
    im.add_argument("--revision", metavar="REV",
                    help="the IDBench-Omni revision BENCH must be (its REVISION file or git "
                    "commit); a different or unknown one is refused")
    im.set_defaults(func=run_import)
    rn = bsub.add_parser(
        "run", help="compare models on a benchmark: tables with intervals, HTML report",
        description="Make what is missing (a checkpoint entry is sampled with omni generate, "
        "a baseline built, another system's folder linked after its rename rule), score every "
        "model with the same metrics, and write the paper's tables (per task, the "
        "multi-person view, the ablation view) with 95%% bootstrap intervals, n and paired "
        "significance marks against the reference model, per-speaker tables, and "
        "OUT/report/index.html. See benchmark/compare.py for models.yaml.")
    rn.add_argument("--bench", required=True,
                    help="benchmark folder (released layout) or bench_instances .parquet")
    rn.add_argument("--models", required=True, help="models.yaml")
    rn.add_argument("--out", required=True, help="comparison folder")
    rn.add_argument("--reference", help="the model others are tested against (default: "
                    "models.yaml's reference, else its first model)")
    rn.add_argument("--published", action="store_true",
                    help="add the paper's published rows below the measured ones (marked)")
    rn.add_argument("--metrics", help="comma-separated metric names (default: the paper's)")
    rn.add_argument("--lite", action="store_true",
                    help="the lite backends for T-Sim and WER (see omni eval --lite)")
    rn.add_argument("--weights", default="debug",
                    help="metric models: 'debug', 'random' or a weights folder")
    rn.add_argument("--device", default="cpu")
    rn.add_argument("--n-boot", type=int, default=10000,
                    help="bootstrap resamples and permutations per cell (default 10000)")
    rn.add_argument("--seed", type=int, default=0)
    rn.add_argument("--correction", choices=("none", "holm"), default="none",
                    help="multiple comparisons: 'holm' corrects the p-values of each cell's "
                    "comparisons with the reference before marking (default none: each mark "
                    "is its own test; pairs.csv always has both)")
    rn.add_argument("--cache", help="the scores' cache folder (default OUT/eval): an omni "
                    "eval output or another comparison lends the scores of predictions whose "
                    "content is the same")
    rn.add_argument("--no-report", action="store_true", help="skip the HTML report")
    rn.add_argument("--quiet", action="store_true")
    rn.set_defaults(func=run_compare)


def run_build(args: argparse.Namespace) -> int:
    from benchmark.build import BuildOptions, build_benchmark, parse_mix

    opts = BuildOptions(persons=args.persons, fraction=args.fraction, seed=args.seed,
                        mix=parse_mix(args.mix), every_task=args.every_task,
                        costars=args.costars, head_expand=args.head_expand)
    res = build_benchmark(args.curation, args.out, crosspair=args.crosspair, options=opts,
                          progress=not args.quiet)
    print("\n".join(res.summary.lines()))
    return 1 if res.instances.empty else 0


def run_fixtures(args: argparse.Namespace) -> int:
    from benchmark.fixtures import build_fixtures
    from omni_core.errors import OmniError

    tasks = tuple(t.strip() for t in args.tasks.split(",") if t.strip())
    bad = [t for t in tasks if t not in ("r2av", "rv2av", "ra2v")]
    try:
        people = tuple(int(n) for n in args.people.split(","))
    except ValueError:
        people = ()
    if bad or not tasks or not people or not set(people) <= {1, 2, 3}:
        raise OmniError(f"--tasks {args.tasks!r} / --people {args.people!r}: tasks are r2av, "
                        f"rv2av, ra2v; people 1, 2, 3")
    fx = build_fixtures(args.corpus, args.out, tasks=tasks, people=people)
    print(f"{len(fx.instance_ids)} instances in {fx.bench}; predictions in {fx.pred}")
    return 0


def run_import(args: argparse.Namespace) -> int:
    from benchmark.released import import_released
    from omni_core.manifests import write_manifest

    inst, errors = import_released(args.bench, revision=args.revision)
    prov = inst.attrs.get("provenance", {})
    write_manifest(inst, "bench_instances", args.out, provenance=prov)
    for e in errors.itertuples():
        print(f"skipped {e.item}: {e.reason}")
    rev = prov.get("revision")
    print(f"revision {rev} ({prov.get('revision_source')})" if rev else
          "revision: unknown (no REVISION file, git checkout or hub snapshot folder)")
    print(f"{len(inst)} instances -> {args.out} ({len(errors)} skipped)")
    return 1 if errors.size and inst.empty else 0


def run_compare(args: argparse.Namespace) -> int:
    from benchmark.compare import load_models, run_comparison

    models, reference = load_models(args.models)
    cmp = run_comparison(
        args.bench, models, args.out, reference=args.reference or reference,
        metrics=args.metrics.split(",") if args.metrics else None, lite=args.lite,
        weights=args.weights, device=args.device, with_published=args.published,
        n_boot=args.n_boot, seed=args.seed, correction=args.correction, cache=args.cache,
        report=not args.no_report,
        progress=not args.quiet,
        config={"bench": args.bench, "models": args.models, "metrics": args.metrics,
                "lite": args.lite, "published": args.published})
    d = cmp.summary["details"]
    if d["note"]:
        print(d["note"])
    print(cmp.markdown)
    for m in d["models"]:
        if m["missing_predictions"]:
            print(f"{m['name']}: {m['missing_predictions']} of {d['instances']} predictions "
                  f"missing or unreadable (counted, never averaged)")
    print(f"comparison in {cmp.out}: tables.md (tables/*.md, .csv, .tex), cells.parquet, "
          f"pairs.csv, results.parquet, turns.parquet, summary.json")
    if not args.no_report:
        print(f"report: {cmp.out / 'report' / 'index.html'}")
    return 0
