"""Importing a pinned IDBench-Omni revision (a REVISION file, a git checkout of the release,
a hub snapshot folder), recorded in the instances' provenance; and three-person cases in our
``threeip`` layout, made here from the sample corpus's media."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark.released import import_released, provenance
from omni_cli.main import main
from omni_core.captions import StructuredCaption, parse_caption
from omni_core.errors import OmniError
from omni_core.manifests import manifest_provenance, read_manifest
from omni_core.media import load_audio, read_frames, read_image, write_image, write_wav

SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def release(shared_dir) -> Path:
    return shared_dir / "data" / "release_test_case"


def copy_release(release: Path, dst: Path) -> Path:
    """The release's files (.DS_Store included) copied to ``dst``."""
    shutil.copytree(release, dst)
    return dst


def test_a_revision_file_is_recorded_and_can_be_pinned(release, tmp_path, capsys):
    root = copy_release(release, tmp_path / "idbench-omni")
    (root / "REVISION").write_text(f"# IDBench-Omni test cases\n\n{SHA}\n"
                                   "source: https://github.com/example/DreamID-Omni\n"
                                   "date: 2026-02-12\n")
    inst, errors = import_released(root, revision=SHA)
    assert errors.empty and len(inst) == 2
    prov = inst.attrs["provenance"]
    assert (prov["revision"], prov["revision_source"]) == (SHA, "REVISION file")
    assert prov["revision_info"] == {"source": "https://github.com/example/DreamID-Omni",
                                     "date": "2026-02-12"}
    assert prov["kind"] == "released" and prov["sets"] == ["oneip", "twoip"]
    # the digest covers the sets' visible files only: the same as the release's own
    ref = import_released(release)[0].attrs["provenance"]
    assert prov["content_sha256"] == ref["content_sha256"] and prov["files"] == ref["files"] == 8
    assert ref["revision"] is None
    # a set folder finds the revision of its parent
    assert import_released(root / "twoip")[0].attrs["provenance"]["revision"] == SHA
    assert import_released(root, revision=SHA[:7])[1].empty  # an abbreviated commit id
    with pytest.raises(OmniError, match=f"is revision {SHA} \\(REVISION file\\), not the "
                                        "pinned fedcba9"):
        import_released(root, revision="fedcba9")
    with pytest.raises(OmniError, match="no revision recorded"):
        import_released(release, revision=SHA)

    out = tmp_path / "inst.parquet"
    assert main(["benchmark", "import", str(root), str(out), "--revision", SHA]) == 0
    printed = capsys.readouterr().out
    assert f"revision {SHA} (REVISION file)" in printed and "2 instances" in printed
    assert manifest_provenance(out)["revision"] == SHA
    assert len(read_manifest(out, "bench_instances")) == 2
    assert main(["benchmark", "import", str(root), str(tmp_path / "x.parquet"),
                 "--revision", "fedcba9"]) == 1
    assert "not the pinned fedcba9" in capsys.readouterr().err
    assert not (tmp_path / "x.parquet").exists()


def test_the_digest_changes_with_a_file(release, tmp_path):
    root = copy_release(release, tmp_path / "copy")
    cap = root / "oneip" / "captions" / "9.json"
    cap.write_text(cap.read_text().replace("fine", "fine."))
    assert provenance(root)["content_sha256"] != provenance(release)["content_sha256"]


def git(cwd: Path, *args: str) -> str:
    exe = shutil.which("git")
    assert exe, "git is part of the machine's toolset"
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com",
           "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_SYSTEM": os.devnull}
    return subprocess.run([exe, *args], cwd=cwd, env=env, check=True, capture_output=True,
                          text=True).stdout.strip()


def test_a_git_checkout_of_the_release_is_its_head_commit(release, tmp_path):
    root = copy_release(release, tmp_path / "DreamID-Omni-test_case")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "test cases")
    head = git(root, "rev-parse", "HEAD")
    prov = import_released(root, revision=head)[0].attrs["provenance"]
    assert (prov["revision"], prov["revision_source"]) == (head, "git")
    assert prov["revision_info"] == {"ref": "refs/heads/main"}
    git(root, "pack-refs", "--all")  # the branch now lives in packed-refs only
    assert not (root / ".git" / "refs" / "heads" / "main").exists()
    assert import_released(root)[0].attrs["provenance"]["revision"] == head
    git(root, "checkout", "-q", "--detach")
    prov = import_released(root)[0].attrs["provenance"]
    assert prov["revision"] == head and prov["revision_info"] == {}
    # a worktree: .git is a file naming the git dir
    wt = tmp_path / "wt"
    git(root, "worktree", "add", "-q", "--detach", str(wt), head)
    assert (wt / ".git").is_file()
    assert import_released(wt)[0].attrs["provenance"]["revision"] == head


def test_a_hub_snapshot_folder_is_its_commit(release, tmp_path):
    snap = tmp_path / "datasets--example--IDBench-Omni" / "snapshots" / SHA
    copy_release(release, snap)
    prov = import_released(snap, revision=SHA)[0].attrs["provenance"]
    assert (prov["revision"], prov["revision_source"]) == (SHA, "hub snapshot")
    assert prov["revision_info"] == {"repository": "datasets--example--IDBench-Omni"}


# --------------------------------------------------------------------------------------------
# three people: our threeip set, from a three-person clip of the sample corpus


def write_case(set_dir: Path, case: str, clip: Path, people: pd.DataFrame,
               turns: pd.DataFrame, source_video: bool = False) -> None:
    frame = read_frames(clip, [0])[0]
    audio = load_audio(clip, 16000)
    cap = StructuredCaption(scene="A three-person corpus clip.")
    subject = {}
    for k, p in enumerate(people.sort_values("person").itertuples()):
        x0, y0, x1, y1 = (int(v) for v in p.face_box)
        write_image(set_dir / "imgs" / case / f"{k}.png",
                    np.ascontiguousarray(frame[y0:y1, x0:x1]))
        mine = turns[turns.speaker == p.person].sort_values("start_s")
        first = mine.iloc[0]
        write_wav(set_dir / "audios" / case / f"{k}.wav",
                  audio[int(first.start_s * 16000):int(first.end_s * 16000)], 16000)
        subject[p.person] = f"<sub{k + 1}>"
        cap.image_captions[f"<img{k + 1}>"] = f"A person, identified as <sub{k + 1}>."
        cap.speaker_timestamps[f"<sub{k + 1}>"] = [(t.start_s, t.end_s)
                                                   for t in mine.itertuples()]
    cap.joint = " ".join(f"{subject[t.speaker]} says, <S>{t.text}<E>"
                         for t in turns.sort_values("start_s").itertuples())
    (set_dir / "captions").mkdir(parents=True, exist_ok=True)
    (set_dir / "captions" / f"{case}.json").write_text(json.dumps(cap.render()))
    if source_video:
        (set_dir / "videos").mkdir(exist_ok=True)
        shutil.copyfile(clip, set_dir / "videos" / f"{case}.mp4")


@pytest.fixture(scope="module")
def three(sample_corpus, release, tmp_path_factory) -> Path:
    """The release's two sets plus threeip: case 7 (R2AV) and case 8 (RV2AV) from the
    corpus's three-person clips, references cut from the clip by the truth's face boxes and
    each person's first turn."""
    root = tmp_path_factory.mktemp("three") / "bench"
    shutil.copytree(release, root)
    out = sample_corpus.out
    files = pd.read_parquet(out / "truth" / "files.parquet")
    people = pd.read_parquet(out / "truth" / "people.parquet")
    turns = pd.read_parquet(out / "truth" / "turns.parquet")
    clips = sorted(files[(files.kind == "talking") & (files.n_people == 3)].file)
    assert len(clips) == 2
    for case, f in zip(("7", "8"), clips, strict=True):
        write_case(root / "threeip", case, out / f, people[people.file == f],
                   turns[(turns.file == f) & (turns.source == "generated")],
                   source_video=case == "8")
    return root


def test_three_person_cases_import(three, sample_corpus):
    inst, errors = import_released(three)
    assert errors.empty
    assert list(inst.instance_id) == ["oneip_9", "threeip_7", "threeip_8", "twoip_20"]
    rows = inst.set_index("instance_id")
    for iid, task in (("threeip_7", "r2av"), ("threeip_8", "rv2av")):
        r = rows.loc[iid]
        assert (r.task, r.split) == (task, "M")
        assert [Path(p).name for p in r.image_refs] == ["0.png", "1.png", "2.png"]
        assert [Path(p).name for p in r.audio_refs] == ["0.wav", "1.wav", "2.wav"]
        cap = parse_caption(r.caption)
        assert cap.subjects == ["<sub1>", "<sub2>", "<sub3>"]
        assert {u.subject for u in cap.speech()} == set(cap.subjects)
        assert all(read_image(p).shape[0] > 50 for p in r.image_refs)  # face crops
    assert rows.loc["threeip_8"].source_video == str(three / "threeip" / "videos" / "8.mp4")
    assert import_released(three / "threeip")[0].split.tolist() == ["M", "M"]


def test_a_gap_in_the_numbering_is_an_error_row(three, tmp_path):
    root = tmp_path / "bench"
    shutil.copytree(three, root)
    imgs = root / "threeip" / "imgs" / "7"
    (imgs / "1.png").rename(imgs / "3.png")  # sub2's image gone, sub3's at the wrong number
    inst, errors = import_released(root)
    assert "threeip_7" not in set(inst.instance_id) and len(inst) == 3
    reason = dict(zip(errors.item, errors.reason, strict=True))["threeip_7"]
    assert "identity images numbered 0, 2, 3, not 0..2" in reason
