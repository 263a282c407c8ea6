"""``ttlesson serve``: one render service that owns the devices of a host, or of every host of a Ray cluster, and
makes frames for any number of clients (``render --server URL``, the notebooks with ``TTLESSON_SERVER``, or tools
written for tt-inference-server).

* ``service``: Ray actors that own the devices (one per card, GPU or CPU slot; SD 3.5 Large's one per Tenstorrent
  node, over all its cards), fed by a fair queue;
* ``actor``: what each actor runs (the same backend a local render uses, loaded once);
* ``fairness``: clients take turns, with a cap on frames in flight per client;
* ``api``: the HTTP API and its tokens; ``protocol``: the requests and events client and service share.

Importing this package loads neither Ray nor Starlette; ``serve`` does.
"""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path

from ..backends.protocol import DEFAULT_PORT
from ..errors import TTLessonError
from ..fileio import read_user_file
from .service import ServiceOptions

MAX_TOKENS_FILE = 4 * 1024 ** 2  # a line per client

__all__ = ["DEFAULT_PORT", "ServiceOptions", "is_loopback", "read_tokens", "serve"]


def serve(options: ServiceOptions, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
          tokens: dict[str, str] | None = None, announce=print) -> None:
    """Start the devices, then answer HTTP on ``host``:``port`` until stopped (Ctrl-C or SIGTERM); ``tokens``
    maps each accepted token to its client's name ("" : the client names itself). Beyond loopback a token is
    required."""
    import asyncio

    _require_the_serve_extra()
    tokens = tokens or {}
    if not tokens and not is_loopback(host):
        raise TTLessonError(f"--host {host} lets other machines in, so the service needs a token: give --token, "
                            "--tokens FILE or TTLESSON_SERVER_TOKEN (or listen on 127.0.0.1).")
    asyncio.run(_run(options, host, port, tokens, announce))


async def _run(options: ServiceOptions, host: str, port: int, tokens: dict[str, str], announce) -> None:
    import uvicorn

    from .api import Access, build_app
    from .service import RenderService

    service = RenderService(options)
    try:
        await service.start()
        config = uvicorn.Config(build_app(service, Access(tokens)), host=host, port=port, log_level="warning",
                                lifespan="off", access_log=False)
        server = uvicorn.Server(config)
        announce(_ready_line(service, host, port, bool(tokens)))
        await server.serve()
    finally:
        await service.stop()


def _ready_line(service, host: str, port: int, locked: bool) -> str:
    devices = ", ".join(f"{slot.name} ({slot.info['device']}, {slot.host})" for slot in service.live_slots())
    models = ", ".join(service.models())
    url = f"http://{host if ':' not in host else f'[{host}]'}:{port}"
    access = "a token is required" if locked else "no token (loopback only)"
    warmed = "".join(f"\n  {slot.name} warmed for {slot.info['warm_for']} in {slot.info['warm_up_seconds']} s"
                     + (f", kernels kept in {slot.info['kernel_cache']}" if slot.info.get("kernel_cache") else "")
                     for slot in service.live_slots() if "warm_up_seconds" in slot.info)
    notices = "".join(f"\n  {notice}" for notice in service.notices)
    return (f"ttlesson serve: {models} on {len(service.live_slots())} device(s): {devices}; listening at {url}, "
            f"{access}. Clients: TTLESSON_SERVER={url}{warmed}{notices}")


def _require_the_serve_extra() -> None:
    import importlib.util

    missing = [name for name in ("ray", "starlette", "uvicorn") if importlib.util.find_spec(name) is None]
    if missing:
        raise TTLessonError(f"ttlesson serve needs {', '.join(missing)}, which this environment lacks; install the "
                            "serve extra: pip install 'ttlesson[serve]' (the same Ray and Python on every host).")


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return all(ipaddress.ip_address(info[4][0]).is_loopback for info in socket.getaddrinfo(host, None))
        except (OSError, ValueError):
            return False


def read_tokens(path: Path) -> dict[str, str]:
    """A tokens file: one client a line, ``name token`` (blank lines and ``#`` comments skipped) → {token: name}."""
    try:
        text = read_user_file(Path(path), "--tokens", MAX_TOKENS_FILE).decode("utf-8")
    except UnicodeDecodeError as err:
        raise TTLessonError(f"--tokens {path} is not UTF-8 text (byte {err.start}); give a text file with one "
                            "'name token' line per client.") from None
    tokens: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if len(words) != 2:
            raise TTLessonError(f"{path} line {number} has {len(words)} words; each line is a client's name and its "
                                "token, e.g. 'alice 5f2c…'.")
        name, token = words
        if len(token) < 8:
            raise TTLessonError(f"{path} line {number}: {name}'s token is shorter than 8 characters; give each client "
                                "a long random one (python -c 'import secrets; print(secrets.token_urlsafe())').")
        if token in tokens:
            raise TTLessonError(f"{path} line {number}: {name} has the same token as {tokens[token]}; give each "
                                "client its own.")
        tokens[token] = name
    if not tokens:
        raise TTLessonError(f"--tokens {path} names no client; write one 'name token' line per client.")
    return tokens
