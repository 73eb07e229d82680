"""``omni weights list|verify|fetch|path``: the pretrained-checkpoint registry."""

from __future__ import annotations

import argparse
import sys

from .table import human_size, print_json, print_table


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "weights", help="list, verify, fetch or locate pretrained checkpoints",
        description="Every pretrained checkpoint the suite uses is listed in one manifest "
        "(omni_core/weights.yaml). Files live under $OMNI_WEIGHTS/<name>/ (default "
        "~/.cache/omni/weights). Nothing is ever downloaded except by `omni weights fetch`.")
    p.add_argument("--weights", metavar="DIR", help="weights folder (default: $OMNI_WEIGHTS)")
    p.add_argument("--manifest", metavar="YAML",
                   help="another weights manifest (e.g. pointing at an internal mirror)")
    wsub = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    ls = wsub.add_parser("list", help="list registry entries and whether they are present")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(func=run_list)

    ver = wsub.add_parser("verify", help="hash files against the manifest's sha256")
    ver.add_argument("names", nargs="*", metavar="NAME",
                     help="entries to verify (default: every entry with files present)")
    ver.set_defaults(func=run_verify)

    fe = wsub.add_parser("fetch", help="download entries (resumable, hash-checked)")
    fe.add_argument("names", nargs="*", metavar="NAME", help="entries to download")
    fe.add_argument("--all", action="store_true", help="download every entry")
    fe.add_argument("--force", action="store_true", help="download again even if present")
    fe.add_argument("--timeout", type=float, default=30.0,
                    help="seconds before a stalled connection fails (default 30)")
    fe.set_defaults(func=run_fetch)

    pa = wsub.add_parser("path", help="print the folder (or one file) of an entry")
    pa.add_argument("name", metavar="NAME")
    pa.add_argument("file", nargs="?", metavar="FILE", help="a file of the entry")
    pa.set_defaults(func=run_path)


def run_list(args: argparse.Namespace) -> int:
    from omni_core.weights import load_registry, status

    reg = load_registry(args.manifest)
    rows = []
    for e in reg.entries:
        st = status(e, args.weights, registry=reg)
        rows.append({"name": e.name, "present": st.ok, "files": len(e.files),
                     "size": e.total_size, "license": e.license, "gated": e.gated,
                     "used_by": list(e.used_by), "folder": str(st.folder),
                     "description": e.description})
    if args.json:
        print_json(rows)
        return 0
    print_table(["name", "present", "files", "size", "license", "used by"],
                [(r["name"], r["present"], r["files"], human_size(r["size"]), r["license"],
                  ", ".join(r["used_by"])) for r in rows])
    return 0


def run_verify(args: argparse.Namespace) -> int:
    from omni_core.errors import OmniError
    from omni_core.weights import FileState, load_registry, status, verify

    reg = load_registry(args.manifest)
    names = args.names or [e.name for e in reg.entries
                           if any(f.state is not FileState.MISSING
                                  for f in status(e, args.weights, registry=reg).files)]
    if not names:
        print("no checkpoint files present to verify")
        return 0
    failed = 0
    for name in names:
        reg.get(name)  # unknown names fail here with close matches
        report = verify(name, args.weights, registry=reg)
        for f in report.files:
            print(f"{'ok  ' if f.ok else 'FAIL'}  {name}/{f.file.path}: {f.state}"
                  f"{f' ({f.detail})' if f.detail else ''}")
        failed += not report.ok
    if failed:
        raise OmniError(f"{failed} of {len(names)} entr{'y' if failed == 1 else 'ies'} failed "
                        "verification; re-fetch with `omni weights fetch NAME --force`")
    return 0


def run_fetch(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from omni_core.errors import OmniError
    from omni_core.weights import fetch, load_registry

    reg = load_registry(args.manifest)
    if args.all == bool(args.names):
        print("omni weights fetch: error: give entry names or --all", file=sys.stderr)
        return 2
    names = [e.name for e in reg.entries] if args.all else args.names
    for name in names:
        reg.get(name)
    bars: dict[str, tqdm] = {}

    def progress(label: str, done: int, total: int | None) -> None:
        bar = bars.get(label)
        if bar is None:
            bar = bars[label] = tqdm(total=total, unit="B", unit_scale=True, desc=label,
                                     leave=False, file=sys.stderr)
        bar.update(done - bar.n)

    errors = []
    for name in names:
        try:
            for r in fetch(name, args.weights, force=args.force, progress=progress,
                           timeout=args.timeout, registry=reg):
                print(f"{name}/{r.file.path}: {r.action} -> {r.path}")
        except OmniError as exc:
            errors.append(str(exc))
            print(f"{name}: error: {exc}", file=sys.stderr)
    for bar in bars.values():
        bar.close()
    if errors:
        raise OmniError(f"{len(errors)} of {len(names)} entries could not be fetched")
    return 0


def run_path(args: argparse.Namespace) -> int:
    from omni_core.weights import load_registry, require

    print(require(args.name, args.file, args.weights, registry=load_registry(args.manifest)))
    return 0
