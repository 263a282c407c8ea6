"""Writes that a crash cannot leave half done: data goes to a hidden partial file, then is renamed."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

PARTIAL_SUFFIX = ".partial"


def write_atomic(path: Path, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one, never a part."""
    partial = write_partial(path, data)
    os.replace(partial, path)
    return path


def write_partial(path: Path, data: bytes | str) -> Path:
    """Write ``data`` durably next to ``path`` under a hidden partial name; the caller renames it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=PARTIAL_SUFFIX)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp makes files private; frames are ordinary files
        with os.fdopen(fd, "wb") as handle:
            handle.write(raw)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return Path(name)


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def remove_partials(folder: Path) -> int:
    """Delete partial files that a killed process left behind; returns how many there were."""
    stale = list(folder.glob(f".*{PARTIAL_SUFFIX}")) if folder.is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    return sha256_of(path.read_bytes())
