"""Hugging Face login for the lesson, on huggingface_hub's own API (releases 0.24 to 2.x).

* ``status()``: is a token present, where from (``HF_TOKEN`` or the stored login), and is the Hub offline;
  no network.
* ``whoami()``: who the token belongs to (network); an offline or unreachable Hub is one sentence, no crash.
* ``login()``: huggingface_hub's own widget in a notebook, its prompt in a terminal.
* ``model_access(model)``: is the model already cached, is it gated (SD 3.5 Large is; SD 1.4 is not, so login
  is optional for it), and what that means for downloading it.

A token is never shown in full: ``mask`` keeps its ``hf_`` prefix and at most its last four characters, and
any text that comes back from the Hub is scrubbed of it before it is shown.
"""

from __future__ import annotations

import html
import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from .. import env
from ..errors import HubAuthError
from ..models import REGISTRY, ModelSpec, resolve
from ..presenting import Presentable, in_notebook, lever

TOKEN_VARIABLES = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
# Pipeline parts whose weights must be in the cache for the model to load offline.
_WEIGHT_PARTS = ("unet", "transformer", "vae", "text_encoder", "text_encoder_2", "text_encoder_3")


def mask(token: str) -> str:
    """``hf_abcd…wxyz`` → ``hf_…wxyz``: the prefix and the last four characters, only for a long token."""
    token = token.strip()
    prefix = "hf_" if token.startswith("hf_") else ""
    tail = token[-4:] if len(token) >= 16 else ""
    return f"{prefix}…{tail}"


def scrub(text: str, token: str | None) -> str:
    """``text`` with every copy of ``token`` replaced by its mask."""
    return text.replace(token, mask(token)) if token else text


def is_offline() -> bool:
    """``HF_HUB_OFFLINE`` as huggingface_hub read it at import, or as the environment says now."""
    return env.hub_offline()


@dataclass(frozen=True)
class AuthStatus(Presentable):
    token: bool  # a token is present
    masked: str | None
    source: str | None  # where huggingface_hub found it
    offline: bool
    problem: str | None = None  # why the token could not be read (HF_HOME a file, the stored token a folder…)

    def __str__(self) -> str:
        offline = " HF_HUB_OFFLINE is set: only cached models can be used." if self.offline else ""
        if self.problem:
            return f"The Hugging Face login cannot be read: {self.problem}.{offline}"
        if not self.token:
            return ("No Hugging Face token (no HF_TOKEN, no stored login): sd14 downloads without one; "
                    f"sd35-large needs one (ttlesson auth login).{offline}")
        return f"Hugging Face token {self.masked} from {self.source}.{offline}"

    def _repr_html_(self) -> str:
        return f"<p>{html.escape(str(self))}</p>"


def status() -> AuthStatus:
    """The login state, from the environment and the stored token; no network."""
    from huggingface_hub import constants, get_token

    try:
        token = get_token()
    except OSError as err:  # HF_HOME names a file, the stored token is a folder, or cannot be read
        from ..fileio import os_error_sentence

        where = err.filename or constants.HF_TOKEN_PATH
        return AuthStatus(token=False, masked=None, source=None, offline=is_offline(),
                          problem=f"{os_error_sentence(err, where, 'read')} (HF_HOME is {constants.HF_HOME})")
    if not token:
        return AuthStatus(token=False, masked=None, source=None, offline=is_offline())
    return AuthStatus(token=True, masked=mask(token), source=_token_source(token), offline=is_offline())


def _token_source(token: str) -> str:
    from huggingface_hub import constants

    for variable in TOKEN_VARIABLES:
        if os.environ.get(variable, "").strip() == token:
            return f"the {variable} environment variable"
    stored = Path(constants.HF_TOKEN_PATH)
    try:
        if stored.read_text(encoding="utf-8").strip() == token:
            return f"the stored login ({stored})"
    except OSError:
        pass  # no stored login: the token came from elsewhere
    return "another place huggingface_hub reads (such as Colab secrets)"


@dataclass(frozen=True)
class Identity(Presentable):
    name: str
    orgs: tuple[str, ...]
    masked: str
    source: str

    def __str__(self) -> str:
        orgs = f" (member of {', '.join(self.orgs)})" if self.orgs else ""
        return f"Logged in to Hugging Face as {self.name}{orgs} with token {self.masked} from {self.source}."

    def _repr_html_(self) -> str:
        return f"<p>{html.escape(str(self))}</p>"


def whoami() -> Identity:
    """Ask the Hub who the token belongs to; raises ``HubAuthError`` with one sentence when it cannot say."""
    import huggingface_hub

    token = huggingface_hub.get_token()
    if not token:
        raise HubAuthError("No Hugging Face token is set (no HF_TOKEN, no stored login); run ttlesson auth login "
                           "(sd14 needs no login, sd35-large does).")
    if is_offline():
        raise HubAuthError(f"HF_HUB_OFFLINE is set, so the Hub cannot be asked whose token {mask(token)} is; "
                           "unset HF_HUB_OFFLINE to check it.")
    try:
        answer = huggingface_hub.whoami(token=token)
    except Exception as err:  # requests or httpx errors, depending on the huggingface_hub release
        raise HubAuthError(_whoami_failure(err, token)) from err
    orgs = tuple(org.get("name", "?") for org in answer.get("orgs", []) if isinstance(org, dict))
    return Identity(name=answer.get("name", "?"), orgs=orgs, masked=mask(token), source=_token_source(token))


def _whoami_failure(err: Exception, token: str) -> str:
    code = getattr(getattr(err, "response", None), "status_code", None)
    if code == 401:
        return (f"The Hub rejected token {mask(token)} (401: revoked or mistyped); log in again with "
                "ttlesson auth login, or fix HF_TOKEN.")
    detail = scrub(str(err).splitlines()[0] if str(err) else "", token)
    why = f"HTTP {code}" if code else type(err).__name__
    return (f"The Hugging Face Hub could not be reached ({why}: {detail}); check the network, or set "
            "HF_HUB_OFFLINE=1 to work from the cache.")


def login() -> AuthStatus | None:
    """Log in with huggingface_hub: its widget in a notebook (returns None; type the token there), its prompt
    in a terminal (returns the new status)."""
    import huggingface_hub

    if is_offline():
        raise HubAuthError("HF_HUB_OFFLINE is set, and logging in checks the token with the Hub; unset "
                           "HF_HUB_OFFLINE, or put the token in the HF_TOKEN environment variable.")
    if in_notebook():
        huggingface_hub.notebook_login()
        return None
    if not sys.stdin.isatty():
        raise HubAuthError("ttlesson auth login needs a terminal to type the token into; run it in a terminal, "
                           "or set the HF_TOKEN environment variable instead.")
    huggingface_hub.login()
    return status()


@dataclass(frozen=True)
class ModelAccess(Presentable):
    model: str
    repo: str
    gated: bool
    gated_from: str  # "the Hub" or "ttlesson's model list"
    cached: str  # complete, partial or no
    token: bool
    offline: bool

    @property
    def url(self) -> str:
        return f"https://huggingface.co/{self.repo}"

    def __str__(self) -> str:
        name = f"{self.model} ({self.repo})"
        if self.cached == "complete":
            return f"{name} is in the local cache: it loads without the Hub or a login."
        cache = ("is partly in the local cache (some weights are missing)" if self.cached == "partial"
                 else "is not in the local cache yet")
        if self.offline:
            return f"{name} {cache}, and HF_HUB_OFFLINE is set: download it on a connected machine first" \
                   f"{self._instead}."
        if not self.gated:
            return (f"{name} {cache}: it is not gated (per {self.gated_from}), so it downloads on first use "
                    "without a login; logging in is optional.")
        if self.token:
            return (f"{name} {cache}: it downloads on first use with the token that is set, if that account accepted "
                    f"the licence at {self.url} (it is gated, per {self.gated_from}).")
        return (f"{name} {cache}, and it is gated (per {self.gated_from}): accept its licence at {self.url} and log "
                "in (ttlesson auth login) before it can download.")

    @property
    def _instead(self) -> str:
        """", or use TTLESSON_MODEL=tiny" for an SD 1.x model, which the offline tiny model is a small one of; ""
        for SD 3.5 Large, which it does not stand in for."""
        spec = REGISTRY.get(self.model)
        return f", or use {lever('model', 'tiny')}" if spec is None or spec.family == "sd1" else ""

    @property
    def needs_login(self) -> bool:
        """A login is needed to get the weights: gated and not already cached."""
        return self.gated and self.cached != "complete"

    def to_dict(self) -> dict:
        return asdict(self) | {"message": str(self)}

    def _repr_html_(self) -> str:
        return f"<p>{html.escape(str(self))}</p>"


def model_access(model: str | ModelSpec = "sd14", *, ask_hub: bool = False) -> ModelAccess:
    """What getting ``model``'s weights takes here. ``ask_hub`` asks the Hub whether it is gated (network);
    otherwise ttlesson's model list says."""
    spec = model if isinstance(model, ModelSpec) else resolve(model)
    if spec.is_local:
        return ModelAccess(spec.name, spec.source, gated=False, gated_from="its local folder", cached="complete",
                           token=status().token, offline=is_offline())
    current = status()
    gated, gated_from = spec.gated, "ttlesson's model list"
    if ask_hub and not current.offline:
        gated, gated_from = _gated_on_hub(spec) or (gated, gated_from)
    return ModelAccess(spec.name, spec.source, gated=gated, gated_from=gated_from, cached=cache_state(spec.source),
                       token=current.token, offline=current.offline)


@dataclass(frozen=True)
class AccessTable(Presentable):
    """``model_access`` for several models, as a table a notebook shows."""

    rows: list[ModelAccess]

    def __str__(self) -> str:
        return "\n".join(str(row) for row in self.rows)

    def _repr_html_(self) -> str:
        from huggingface_hub import constants

        cached = {"complete": "yes", "partial": "partly", "no": "no"}
        head = "".join(f"<th style='text-align:left'>{h}</th>" for h in
                       ("model", "Hub repository", "gated", "in the local cache", "login needed"))
        body = "".join(
            "<tr>" + "".join(f"<td style='text-align:left'>{html.escape(str(cell))}</td>" for cell in (
                row.model, row.repo, "yes" if row.gated else "no", cached.get(row.cached, row.cached),
                "yes" if row.needs_login else "no")) + "</tr>" for row in self.rows)
        notes = "".join(f"<li>{html.escape(str(row))}</li>" for row in self.rows)
        return (f"<table><tr>{head}</tr>{body}</table><ul>{notes}</ul>"
                f"<p style='font-size:12px'>The local cache: {html.escape(str(constants.HF_HUB_CACHE))}</p>")


def access_table(models: tuple[str, ...] = ("sd14", "sd35-large")) -> AccessTable:
    """What getting each model's weights takes here: gated or not, cached or not, login needed or not."""
    return AccessTable([model_access(model) for model in models])


def _gated_on_hub(spec: ModelSpec) -> tuple[bool, str] | None:
    import huggingface_hub

    try:
        info = huggingface_hub.model_info(spec.source, token=huggingface_hub.get_token() or None, timeout=10)
    except Exception:  # unreachable Hub or refused request: the model list answers instead
        return None
    return bool(info.gated), "the Hub"


def cache_state(repo: str, cache_dir: str | Path | None = None) -> str:
    """``complete`` when the pipeline's index and every weight-bearing part are in the Hub cache (``cache_dir``,
    else huggingface_hub's own), ``partial`` when only some are, ``no`` when nothing is."""
    from huggingface_hub import try_to_load_from_cache

    index = try_to_load_from_cache(repo, "model_index.json", cache_dir=cache_dir)
    if not isinstance(index, str):  # None (never fetched) or a "known to be missing" marker
        return "no"
    snapshot = Path(index).parent
    try:
        parts = json.loads(Path(index).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return "partial"
    if not isinstance(parts, dict):
        return "partial"
    needed = [name for name in _WEIGHT_PARTS if isinstance(parts.get(name), list) and parts[name][0]]
    has_weights = all(any(any((snapshot / name).glob(pattern)) for pattern in ("*.safetensors", "*.bin"))
                      for name in needed)
    return "complete" if has_weights else "partial"


def known_models() -> list[str]:
    """The registry's Hub models, the ones login and caching matter for."""
    return [name for name, spec in REGISTRY.items() if not spec.is_local]
