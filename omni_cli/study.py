"""``omni study``: blind human ratings of generated videos (create, serve, status, export,
aggregate)."""

from __future__ import annotations

import argparse
import sys

DEFAULT_URL = "http://127.0.0.1:8765"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "study", help="a blind user study of generated videos: create, serve, aggregate",
        description="The paper's human evaluation as a tool. `create` draws the items (an "
        "instance's video per model, or two models' videos side by side) and balanced "
        "assignments with attention checks, and prints one personal link per rater; `serve` "
        "runs the rating app (127.0.0.1 by default); `status` shows progress; `export` writes "
        "every answer; `aggregate` writes the human-evaluation table (mean or good/same/bad "
        "with 95% bootstrap intervals over raters and instances, Krippendorff's alpha). "
        "docs/study.md explains running one with remote raters.")
    ssub = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    c = ssub.add_parser("create", help="a new study from a comparison or prediction folders")
    src = c.add_mutually_exclusive_group(required=True)
    src.add_argument("--comparison", metavar="O",
                     help="an `omni benchmark run` output: its instances and predictions/")
    src.add_argument("--bench", metavar="B", help="a benchmark (released layout or "
                     "bench_instances .parquet); give the models with --predictions")
    c.add_argument("--predictions", action="append", default=[], metavar="NAME=DIR",
                   help="with --bench: a model's videos, DIR/<instance_id>.mp4 (a sibling "
                   ".wav is muxed in when the mp4 is silent); repeatable, two or more")
    c.add_argument("--out", required=True, metavar="STUDY", help="the study folder to create")
    c.add_argument("--protocol", choices=("absolute", "pairwise"), default="absolute",
                   help="absolute 1-5 scores (default), or pairwise good/same/bad")
    c.add_argument("--raters", type=int, default=5, help="personal links (default 5)")
    c.add_argument("--ratings", type=int, default=3,
                   help="ratings per item, each by another rater (default 3)")
    c.add_argument("--instances", type=int, help="draw this many instances (default all)")
    c.add_argument("--tasks", default="r2av",
                   help="comma-separated tasks rated, or `all` (default r2av, as the paper)")
    c.add_argument("--pairs", choices=("all", "reference"), default="all",
                   help="pairwise: every pair of models, or the reference against each other")
    c.add_argument("--reference", help="pairwise: the reference model (default the first)")
    c.add_argument("--repeats", type=int, default=1,
                   help="attention check: items shown again to the same rater (default 1)")
    c.add_argument("--broken", type=int, default=1,
                   help="attention check: obviously broken videos per rater (default 1)")
    c.add_argument("--labels", help="comma-separated rater labels (default rater 1, ...)")
    c.add_argument("--seed", type=int, default=0, help="the draw's seed (default 0)")
    c.add_argument("--base-url", default=DEFAULT_URL,
                   help=f"the address raters reach the server at (default {DEFAULT_URL})")
    c.set_defaults(func=run_create)

    s = ssub.add_parser("serve", help="serve the rating app until Ctrl-C")
    s.add_argument("study", metavar="STUDY")
    s.add_argument("--host", default="127.0.0.1",
                   help="bind address (default 127.0.0.1; see docs/study.md before exposing it)")
    s.add_argument("--port", type=int, default=8765, help="port (default 8765; 0: any free)")
    s.add_argument("--base-url", help="the address raters use (behind a proxy), for the links")
    s.add_argument("--quiet", action="store_true", help="no request log")
    s.set_defaults(func=run_serve)

    st = ssub.add_parser("status", help="progress per rater")
    st.add_argument("study", metavar="STUDY")
    st.add_argument("--base-url", default=None, help="also print each rater's link")
    st.set_defaults(func=run_status)

    e = ssub.add_parser("export", help="every answer as CSV or Parquet")
    e.add_argument("study", metavar="STUDY")
    e.add_argument("--out", required=True, metavar="FILE", help="answers.csv or .parquet")
    e.set_defaults(func=run_export)

    a = ssub.add_parser("aggregate", help="the human-evaluation table")
    a.add_argument("study", metavar="STUDY")
    a.add_argument("--out", help="folder for the tables (default STUDY/results)")
    a.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples (default 2000)")
    a.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    a.add_argument("--no-report", action="store_true",
                   help="do not add the table to the comparison's HTML report")
    a.set_defaults(func=run_aggregate)


def run_create(args: argparse.Namespace) -> int:
    from pathlib import Path

    from benchmark.study.design import (
        StudyOptions,
        comparison_inputs,
        create_study,
        write_links,
    )
    from omni_core.errors import OmniError

    if args.comparison:
        if args.predictions:
            raise OmniError("--predictions goes with --bench; a comparison has its own")
        instances, preds = comparison_inputs(args.comparison)
        source = {"comparison": str(Path(args.comparison).resolve())}
    else:
        from benchmark.study.design import bench_inputs

        instances, preds = bench_inputs(args.bench, args.predictions)
        source = {"bench": str(Path(args.bench).resolve())}
    opts = StudyOptions(
        protocol=args.protocol, raters=args.raters, ratings=args.ratings,
        instances=args.instances, tasks=tuple(t.strip() for t in args.tasks.split(",")),
        pairs=args.pairs, reference=args.reference, repeats=args.repeats, broken=args.broken,
        labels=tuple(x.strip() for x in args.labels.split(",")) if args.labels else (),
        seed=args.seed)
    plan = create_study(args.out, instances, preds, opts, source=source)
    links = write_links(plan, args.base_url)
    print(f"omni study: {plan.folder}: {plan.protocol} protocol, {len(plan.models)} models, "
          f"{len(plan.instances)} instances, {plan.items} items x {opts.ratings} ratings, "
          f"{len(plan.raters)} raters ({min(plan.per_rater)}-{max(plan.per_rater)} items each "
          f"with {opts.repeats} repeated and {opts.broken} broken as attention checks)")
    for m, missing in plan.left_out.items():
        print(f"  left out: {len(missing)} instances without a readable video from {m} "
              f"(e.g. {missing[0]})")
    print(f"  links (also in {links}, readable by you only):")
    for label, url in plan.links(args.base_url):
        print(f"    {label}: {url}")
    print(f"  serve it: omni study serve {plan.folder}")
    return 0


def run_serve(args: argparse.Namespace) -> int:
    import ipaddress

    from benchmark.study.server import make_server

    server = make_server(args.study, args.host, args.port, quiet=args.quiet)
    base = args.base_url or server.url
    try:
        loopback = ipaddress.ip_address(server.server_address[0]).is_loopback
    except ValueError:
        loopback = False
    n = server.RequestHandlerClass.study.con().execute("SELECT COUNT(*) FROM raters").fetchone()[0]
    print(f"omni study: serving {args.study} ({n} raters) at {server.url}", flush=True)
    print(f"  links: omni study status {args.study} --base-url {base}", flush=True)
    if not loopback:
        print("  warning: listening beyond this machine without TLS; put a reverse proxy with "
              "TLS in front of it (docs/study.md)", file=sys.stderr, flush=True)
    print("  Ctrl-C stops (answers are saved as they come)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def run_status(args: argparse.Namespace) -> int:
    from benchmark.study.aggregate import attention, load_answers
    from benchmark.study.db import connect

    df, meta = load_answers(args.study)
    raters = attention(df, meta)
    tokens = {}
    if args.base_url:
        con = connect(args.study)
        try:
            tokens = dict(con.execute("SELECT rater_id, token FROM raters").fetchall())
        finally:
            con.close()
    print(f"omni study: {args.study}: {meta['protocol']} protocol, models "
          f"{', '.join(meta['models'])}")
    for r in raters.itertuples(index=False):
        flag = " EXCLUDED: " + r.reason if r.excluded else ""
        link = f"  {args.base_url.rstrip('/')}/r/{tokens[r.rater_id]}" if tokens else ""
        print(f"  {r.rater}: {r.answered}/{r.total}{flag}{link}")
    done = int(raters.answered.sum())
    total = int(raters.total.sum())
    print(f"  {done}/{total} items answered ({100 * done / max(1, total):.0f}%)")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from benchmark.study.aggregate import export_answers

    n = export_answers(args.study, args.out)
    print(f"omni study: {n} answers (one row per dimension) -> {args.out}")
    return 0


def run_aggregate(args: argparse.Namespace) -> int:
    from benchmark.study.aggregate import human_eval, markdown, write_results

    h = human_eval(args.study, n_boot=args.n_boot, seed=args.seed)
    folder = write_results(args.study, h, args.out)
    print(markdown(h), end="")
    print(f"omni study: tables in {folder}")
    if not args.no_report:
        from benchmark.study.report import attach_to_comparison

        index = attach_to_comparison(args.study, h)
        if index is not None:
            print(f"omni study: added to the comparison's report {index}")
    return 0
