"""A script uid's files in the shared temp directories are removed after its run, and nothing else is."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tq_executor import sandbox

pytestmark = [
    pytest.mark.unit,
    pytest.mark.skipif(os.geteuid() != 0, reason="files of another uid can only be made by root"),
]
UID = 61999


def owned(path: Path, uid: int = UID) -> Path:
    os.chown(path, uid, uid, follow_symlinks=False)
    return path


def test_only_the_uids_own_entries_go_without_following_a_symlink(tmp_path: Path) -> None:
    top, outside = tmp_path / "tmp", tmp_path / "outside"
    top.mkdir()
    outside.mkdir()
    (outside / "victim").write_text("x")
    owned(outside / "victim")  # the uid's, but not in a shared directory: not ours to remove
    shared = top / "shared"  # another owner's world-writable directory, where the uid could write too
    shared.mkdir()
    shared.chmod(0o1777)
    private = top / "private"  # another owner's private directory: the uid cannot have written inside
    private.mkdir()
    (private / "kept").write_text("x")
    owned(private / "kept")
    left = [top / "file", top / "dir", shared / "file"]
    left[0].write_text("x")
    left[1].mkdir()
    (left[1] / "inner").write_text("x")
    left[2].write_text("x")
    link = top / "link"
    link.symlink_to(outside)
    kept = top / "someone-elses"
    kept.write_text("x")
    for path in (*left, left[1] / "inner", link):
        owned(path)

    assert sandbox.remove_files_of(UID, (str(top),)) == 4

    assert not any(os.path.lexists(path) for path in (*left, link))
    assert kept.exists()
    assert shared.exists()
    assert (outside / "victim").exists()  # the symlink went, not what it pointed to
    assert (private / "kept").exists()
