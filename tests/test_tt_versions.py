"""Which ttnn and which tt-metal checkout will be used, and whether they belong together: real git checkouts made
in tmp dirs (a tag, commits after it, a worktree, packed refs), and doctor / detect saying so."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import run_json

from ttlesson.setup import doctor
from ttlesson.tenstorrent.versions import CheckoutInfo, checkout_info, mismatch, read_git_commit

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), "-c", "user.email=t@t", "-c", "user.name=t", *args],
                          capture_output=True, text=True, check=True).stdout.strip()


def make_checkout(root: Path, tag: str | None = "v0.81.1", commits_after: int = 0) -> Path:
    for folder in ("models", "tt_metal", "ttnn/ttnn"):
        (root / folder).mkdir(parents=True)
    git(root, "init", "-q")
    git(root, "commit", "-q", "--allow-empty", "-m", "release")
    if tag:
        git(root, "tag", tag)
    for number in range(commits_after):
        git(root, "commit", "-q", "--allow-empty", "-m", f"after {number}")
    return root


def test_a_checkout_at_a_release_tag(tmp_path, monkeypatch):
    root = make_checkout(tmp_path / "tt-metal")
    monkeypatch.setenv("TT_METAL_HOME", str(root))
    info = checkout_info()
    assert (info.root, info.found_by, info.commit) == (root, "TT_METAL_HOME", git(root, "rev-parse", "HEAD"))
    assert (info.describe, info.release) == ("v0.81.1", "0.81.1")
    assert str(info) == f"TT_METAL_HOME={root}, commit {info.commit[:12]}, v0.81.1"


def test_commits_after_the_tag_and_a_worktree_and_packed_refs(tmp_path, monkeypatch):
    root = make_checkout(tmp_path / "tt-metal", commits_after=2)
    info = CheckoutInfo(root, "TT_METAL_HOME", read_git_commit(root))
    assert info.commit == git(root, "rev-parse", "HEAD")
    git(root, "pack-refs", "--all")  # the branch now lives in .git/packed-refs only
    assert read_git_commit(root) == info.commit
    worktree = tmp_path / "wt"
    git(root, "worktree", "add", "-q", "-b", "other", str(worktree))  # .git is a file pointing elsewhere
    assert read_git_commit(worktree) == info.commit
    monkeypatch.setenv("TT_METAL_HOME", str(root))
    assert checkout_info().describe.startswith("v0.81.1-2-g")


def test_a_folder_that_is_not_a_git_checkout(tmp_path, monkeypatch):
    for folder in ("models", "tt_metal"):
        (tmp_path / folder).mkdir()
    monkeypatch.setenv("TT_METAL_HOME", str(tmp_path))
    info = checkout_info()
    assert info.commit is None and str(info).endswith("not a git checkout (no commit to report)")


def test_what_belongs_together(tmp_path):
    at_tag = CheckoutInfo(tmp_path, "TT_METAL_HOME", "a" * 40, "v0.81.1", "0.81.1")
    later = CheckoutInfo(tmp_path, "TT_METAL_HOME", "b" * 40, "v0.81.1-12-gbbbbbbb", "0.81.1")
    older = CheckoutInfo(tmp_path, "TT_METAL_HOME", "c" * 40, "v0.62.0", "0.62.0")
    wheel = "/opt/venv/lib/python3.10/site-packages/ttnn"
    assert mismatch("0.62.0.dev0", str(tmp_path / "ttnn" / "ttnn"), older) is None  # built in the checkout
    assert mismatch("0.81.1", wheel, at_tag) is None  # the wheel of the release the checkout is at
    assert mismatch("0.81.1", wheel, None) is None  # no checkout: nothing to disagree with
    warning = mismatch("0.81.1", wheel, older)
    assert warning.startswith(f"ttnn 0.81.1 is imported from {wheel}, not from the checkout at {tmp_path} "
                              "(tt-metal v0.62.0): the model code and the ops may come from different releases;")
    assert warning.endswith("use the ttnn built in that checkout (activate its python_env) or check out the tag "
                            "v0.81.1.")
    assert "(tt-metal v0.81.1-12-gbbbbbbb)" in mismatch("0.81.1", wheel, later)


def test_doctor_and_detect_name_both_and_warn_when_they_differ(tmp_path):
    root = make_checkout(tmp_path / "tt-metal", tag="v0.60.0")
    env = {"TT_METAL_HOME": str(root)}
    checks = {check["name"]: check for check in run_json("doctor", env=env)["checks"]}
    versions = checks["ttnn and tt-metal"]
    assert f"TT_METAL_HOME={root}, commit " in versions["detail"] and "v0.60.0" in versions["detail"]
    from ttlesson import machine

    if machine.ttnn_install_info().installed:  # the dev environment has the ttnn wheel: it is not the checkout's
        assert versions["status"] == "warn" and "may come from different releases" in versions["fix"]
    report = run_json("detect", env=env)
    assert report["tt_metal"]["describe"] == "v0.60.0" and report["tt_metal"]["root"] == str(root)
    assert (report["versions_note"] is not None) == machine.ttnn_install_info().installed
    assert doctor.check_tt_versions().name == "ttnn and tt-metal"
