"""Which ttnn and which tt-metal checkout the tt backend will use, and whether they belong together.

With tt-metal built from source, the Python model code (``models/...``) comes from the checkout named by
``TT_METAL_HOME`` (or found on ``PYTHONPATH``), while the kernels and ops come from whichever ``ttnn`` Python
imports. A pip-installed ``ttnn`` wheel next to a checkout of another release mixes two versions: the model
code then calls ops whose signatures or behaviour changed. This module reads both without importing either:
ttnn from its install record, the checkout from its ``.git`` folder (``git describe`` when git is there).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..presenting import Presentable

GIT_SECONDS = 5.0


@dataclass(frozen=True)
class CheckoutInfo(Presentable):
    root: Path
    found_by: str  # "TT_METAL_HOME", "TT_METAL_RUNTIME_ROOT", "python_env" or "PYTHONPATH"
    commit: str | None = None  # full hash, when the checkout is a git checkout
    describe: str | None = None  # "v0.81.1-120-g1234abcd" (git describe --tags), when git can say
    release: str | None = None  # "0.81.1": the release tag the checkout is at or after

    def __str__(self) -> str:
        where = (f"{self.found_by}={self.root}" if self.found_by in ("TT_METAL_HOME", "TT_METAL_RUNTIME_ROOT")
                 else f"{self.root} ({self.found_by})")
        if not self.commit:
            return f"{where}, not a git checkout (no commit to report)"
        tag = f", {self.describe}" if self.describe else ""
        return f"{where}, commit {self.commit[:12]}{tag}"


def find_checkout_root() -> tuple[Path, str] | None:
    """(checkout root, how it was found), as the tt backend looks for it (``tt_metal.checkout_candidates``)."""
    from .checkout import checkout_candidates

    candidates = checkout_candidates()
    return candidates[0] if candidates else None


def checkout_info() -> CheckoutInfo | None:
    found = find_checkout_root()
    if found is None:
        return None
    root, found_by = found
    commit = read_git_commit(root)
    describe = _git_describe(root) if commit else None
    release = _release_of(describe)
    return CheckoutInfo(root, found_by, commit, describe, release)


def read_git_commit(root: Path) -> str | None:
    """The commit a checkout is at, read from its ``.git`` (a folder, or a file pointing at one for worktrees)."""
    git = root / ".git"
    if git.is_file():
        pointer = git.read_text(errors="replace").strip()
        if not pointer.startswith("gitdir:"):
            return None
        git = (root / pointer.split(":", 1)[1].strip()).resolve()
    head = _read(git / "HEAD")
    if head is None:
        return None
    if not head.startswith("ref:"):
        return head if re.fullmatch(r"[0-9a-f]{40}", head) else None
    ref = head.split(":", 1)[1].strip()
    common = Path(_read(git / "commondir") or ".")
    for folder in (git, (git / common).resolve()):
        loose = _read(folder / ref)
        if loose:
            return loose
        for line in (_read(folder / "packed-refs") or "").splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1] == ref:
                return parts[0]
    return None


def _git_describe(root: Path) -> str | None:
    git = shutil.which("git")
    if git is None:
        return None
    try:
        proc = subprocess.run([git, "-C", str(root), "describe", "--tags", "--always"], capture_output=True,
                              text=True, timeout=GIT_SECONDS, stdin=subprocess.DEVNULL)
    except (subprocess.TimeoutExpired, OSError):
        return None
    if proc.returncode != 0:
        return None
    return proc.stdout.strip() or None


def _release_of(describe: str | None) -> str | None:
    found = re.match(r"v?(\d+\.\d+\.\d+)", describe or "")
    return found.group(1) if found else None


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace").strip()
    except OSError:
        return None


def mismatch(ttnn_version: str | None, ttnn_location: str | None, checkout: CheckoutInfo | None) -> str | None:
    """One sentence when the ttnn that imports does not belong with the tt-metal checkout, else None."""
    if checkout is None or not ttnn_location:
        return None
    location = Path(ttnn_location).resolve()
    if _inside(location, checkout.root):
        return None  # built from this checkout
    wheel = _release_of(ttnn_version)
    if wheel and checkout.release and wheel == checkout.release and checkout.describe \
            and re.fullmatch(r"v?\d+\.\d+\.\d+", checkout.describe):
        return None  # a wheel of exactly the release the checkout is at
    at = (f"tt-metal {checkout.describe}" if checkout.describe
          else f"a tt-metal checkout at {checkout.commit[:12]}" if checkout.commit else "a tt-metal checkout")
    return (f"ttnn {ttnn_version or '(version unknown)'} is imported from {location}, not from the checkout at "
            f"{checkout.root} ({at}): the model code and the ops may come from different releases; use the ttnn "
            f"built in that checkout (activate its python_env) or check out the tag v{wheel or '<ttnn version>'}.")


def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root.resolve())
        return True
    except ValueError:
        return False
