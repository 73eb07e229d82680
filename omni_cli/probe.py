"""``omni probe PATH...``: media properties per file; unreadable files get a one-line reason."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .table import print_json, print_table

MEDIA_SUFFIXES = {".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".wav", ".flac", ".mp3",
                  ".m4a", ".aac", ".ogg", ".opus"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "probe", help="show duration, fps, frames, resolution, audio, codecs of media files",
        description="Probe media files (folders are searched for media files). Each file "
        "gets its properties or a one-line reason why it cannot be read. Warnings (no "
        "audio, variable frame rate) are shown but are not failures unless --require asks.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="files or folders")
    p.add_argument("--json", action="store_true", help="print JSON (one object per file)")
    p.add_argument("--require", choices=("video", "audio", "av"),
                   help="count files without a video / audio / both streams as failures")
    p.add_argument("--timeout", type=float, default=60.0,
                   help="seconds allowed per file before it counts as hung (default 60)")
    p.set_defaults(func=run)


def expand(paths: list[str]) -> list[Path]:
    files: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.is_file()
                            and f.suffix.lower() in MEDIA_SUFFIXES)
        else:
            files.append(p)
    return files


def run(args: argparse.Namespace) -> int:
    from omni_core.errors import MediaError
    from omni_core.media import probe

    results = []
    for path in expand(args.paths):
        try:
            info = probe(path, timeout=args.timeout)
        except MediaError as exc:
            results.append({"path": str(path), "ok": False, "error": str(exc)})
            continue
        rec = {"ok": True, **info.to_dict()}
        missing = {"video": not info.has_video, "audio": not info.has_audio,
                   "av": not (info.has_video and info.has_audio)}
        if args.require and missing[args.require]:
            rec["ok"] = False
            rec["error"] = f"{path}: required stream missing ({'; '.join(info.warnings)})"
        results.append(rec)
    if args.json:
        print_json(results)
    else:
        rows = []
        for r in results:
            if "duration_s" not in r:
                rows.append((r["path"], "ERROR", "", "", "", "", "", r["error"]))
                continue
            res = f"{r['width']}x{r['height']}" if r["width"] else None
            audio = (f"{r['audio_codec']} {r['sample_rate']} Hz x{r['channels']}"
                     if r["has_audio"] else None)
            status = "ok" if r["ok"] else "FAIL"
            rows.append((r["path"], status, r["duration_s"], r["fps"], r["n_frames"], res,
                         f"{r['video_codec'] or '-'} / {audio or '-'}",
                         r.get("error") or "; ".join(r["warnings"])))
        print_table(["file", "status", "seconds", "fps", "frames", "size", "video / audio",
                     "notes"], rows)
    failed = sum(not r["ok"] for r in results)
    if failed:
        print(f"{failed} of {len(results)} file(s) could not be used", file=sys.stderr)
    return 1 if failed else 0
