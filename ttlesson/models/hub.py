"""Weights from the Hugging Face Hub, through huggingface_hub's cache; when they are not cached and cannot be
downloaded, one sentence naming the model and the fix."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .. import env
from ..errors import ModelNotAvailableError
from ..presenting import lever
from ..tenstorrent.speeds import duration

if TYPE_CHECKING:
    from . import ModelSpec


def quiet_hf_libraries() -> None:
    """Keep transformers' and diffusers' own info logs and progress bars out of the lesson's display."""
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    import diffusers

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()


def hub_snapshot(spec: ModelSpec) -> Path:
    """The model's folder in the Hub cache, downloaded if need be. A model that cannot be had is refused before
    diffusers (seconds of imports) is loaded: the pipeline index alone tells whether it is cached or downloadable."""
    if _index_is_cached(spec):
        import diffusers

        try:
            return Path(diffusers.DiffusionPipeline.download(spec.source, local_files_only=True))
        except Exception:  # not completely cached: fall through to a download
            pass
    if env.hub_offline():
        raise ModelNotAvailableError(_not_cached_message(spec, "HF_HUB_OFFLINE is set"))
    try:
        _download_index(spec)  # the Hub's refusals (gated, not found, unreachable) come from this first request
        import diffusers

        return Path(diffusers.DiffusionPipeline.download(spec.source))
    except Exception as err:  # huggingface_hub, requests and httpx raise many types; the fix depends on which
        raise ModelNotAvailableError(_download_failure_message(spec, err)) from err


def _index_is_cached(spec: ModelSpec) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(spec.source, "model_index.json"), str)


def _download_index(spec: ModelSpec) -> None:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.utils import logging

    logging.set_verbosity_error()  # its "Retrying in 8s" lines would bury the one sentence that says what to do
    hf_hub_download(spec.source, "model_index.json")


def _not_cached_message(spec: ModelSpec, why: str) -> str:
    login = " after accepting its licence on the Hub and logging in (ttlesson auth login)" if spec.gated else ""
    return (f"The weights of {spec.source} ({spec.name}) are not in the Hugging Face cache and {why}; "
            f"download them on a connected machine{login}, or use {lever('model', 'tiny')} to try the lesson offline.")


def _download_failure_message(spec: ModelSpec, err: Exception) -> str:
    from huggingface_hub.utils import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    # diffusers wraps the Hub's own error in an OSError: look for it down the chain of causes.
    chain: list[BaseException] = [err]
    while chain[-1].__cause__ is not None and len(chain) < 8:
        chain.append(chain[-1].__cause__)
    hub_error = next((error for error in chain if isinstance(error, HfHubHTTPError)), None)
    status = getattr(getattr(hub_error, "response", None), "status_code", None)
    if isinstance(hub_error, GatedRepoError) or (spec.gated and status == 401):
        return (f"{spec.source} is gated on the Hugging Face Hub: accept its licence at {spec.hub_url} and log "
                f"in (ttlesson auth login), or use {lever('model', 'sd14')}, which needs no login.")
    if isinstance(hub_error, RepositoryNotFoundError):
        return (f"The Hub has no model {spec.source!r} (or it is private); check the name, or use "
                f"{lever('model', 'sd14')}.")
    return _not_cached_message(spec, "the Hub could not be reached")


# --- fetching before the day: a workshop's shared cache ---------------------------------------------------------

@dataclass(frozen=True)
class FetchResult:
    model: str
    folder: Path  # the snapshot in the Hugging Face cache
    files: int
    size: int  # bytes
    checked: int  # files whose content was checked against the Hub's hash
    seconds: float

    def __str__(self) -> str:
        cache = self.folder.parents[2] if self.folder.parent.name == "snapshots" else self.folder
        size = f"{self.size / 1e9:.2f} GB" if self.size >= 1e9 else f"{self.size / 1e6:.1f} MB"  # the Hub's units
        return (f"{self.model}: {self.files} files, {size} in {self.folder}, each checked "
                f"against the Hub's hash ({self.checked} of {self.files}), in {duration(self.seconds)}.\n"
                f"Others read it without a network: HF_HUB_CACHE={cache} HF_HUB_OFFLINE=1 (read-only is enough).")


def fetch(spec: ModelSpec) -> FetchResult:
    """Download everything the model's pipeline needs into the Hugging Face cache (``HF_HOME``/``HF_HUB_CACHE``),
    with huggingface_hub's progress bars; a download cut short resumes where it stopped. Every file is then
    checked against the hash the Hub gave for it, so a cache filled the evening before is known whole."""
    started = time.perf_counter()
    if env.hub_offline():
        raise ModelNotAvailableError(f"HF_HUB_OFFLINE is set, so {spec.source} cannot be fetched; unset it on the "
                                     "machine that fetches (attendees keep it set).")
    _remove_what_killed_fetches_left(spec)
    try:
        _download_index(spec)
        quiet_hf_libraries()
        import diffusers
        from huggingface_hub.utils import enable_progress_bars

        enable_progress_bars()  # a fetch shows its bytes (a render's own display replaces them)
        folder = Path(diffusers.DiffusionPipeline.download(spec.source))
    except Exception as err:  # huggingface_hub, requests and httpx raise many types; the fix depends on which
        raise ModelNotAvailableError(_download_failure_message(spec, err)) from err
    files = [path for path in sorted(folder.rglob("*")) if path.is_file()]
    checked = sum(_matches_the_hub(path) for path in files)
    return FetchResult(spec.name, folder, len(files), sum(path.stat().st_size for path in files), checked,
                       time.perf_counter() - started)


def _remove_what_killed_fetches_left(spec: ModelSpec) -> None:
    """huggingface_hub (1.x and later) downloads each file to ``<etag>.<random>.incomplete`` and, if killed,
    leaves it: gigabytes in a shared cache. One is removed when nobody holds the download lock of its file."""
    from filelock import FileLock, Timeout
    from huggingface_hub import constants
    from huggingface_hub.file_download import repo_folder_name

    repo = repo_folder_name(repo_id=spec.source, repo_type="model")
    blobs = Path(constants.HF_HUB_CACHE) / repo / "blobs"
    locks = Path(constants.HF_HUB_CACHE) / ".locks" / repo
    for partial in blobs.glob("*.*.incomplete") if blobs.is_dir() else ():
        lock = FileLock(str(locks / f"{partial.name.split('.')[0]}.lock"))
        try:
            with lock.acquire(timeout=0):
                partial.unlink(missing_ok=True)
        except (Timeout, OSError):  # being downloaded now, or a cache this user cannot change
            continue


def _matches_the_hub(path: Path) -> bool:
    """True when the file's content has the hash its cache blob is named after (the Hub's ETag: SHA-256 for large
    files, the git blob SHA-1 for small ones); False when the cache keeps no blob to check (no symlinks). A
    mismatch is one sentence: the blob is damaged, and a new fetch would reuse it."""
    blob = path.resolve()
    name = blob.name
    if blob.parent.name != "blobs" or len(name) not in (40, 64):
        return False
    digest = hashlib.sha256() if len(name) == 64 else hashlib.sha1(b"blob %d\0" % blob.stat().st_size)
    with open(blob, "rb") as handle:  # weights are gigabytes: a block at a time
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != name:
        raise ModelNotAvailableError(f"{path} does not match the Hub's hash for it (the download was damaged); "
                                     f"delete {blob} and run ttlesson fetch again.")
    return True
