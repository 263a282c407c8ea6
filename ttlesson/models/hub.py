"""Weights from the Hugging Face Hub, through huggingface_hub's cache; when they are not cached and cannot be
downloaded, one sentence naming the model and the fix."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .. import env
from ..errors import ModelNotAvailableError

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
            f"download them on a connected machine{login}, or use --model tiny to try the lesson offline.")


def _download_failure_message(spec: ModelSpec, err: Exception) -> str:
    from huggingface_hub.utils import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    # diffusers wraps the Hub's own error in an OSError: look for it down the chain of causes.
    chain = [err]
    while chain[-1].__cause__ is not None and len(chain) < 8:
        chain.append(chain[-1].__cause__)
    hub_error = next((error for error in chain if isinstance(error, HfHubHTTPError)), None)
    status = getattr(getattr(hub_error, "response", None), "status_code", None)
    if isinstance(hub_error, GatedRepoError) or (spec.gated and status == 401):
        return (f"{spec.source} is gated on the Hugging Face Hub: accept its licence at {spec.hub_url} and log "
                "in (ttlesson auth login), or use --model sd14, which needs no login.")
    if isinstance(hub_error, RepositoryNotFoundError):
        return f"The Hub has no model {spec.source!r} (or it is private); check the name, or use --model sd14."
    return _not_cached_message(spec, "the Hub could not be reached")
