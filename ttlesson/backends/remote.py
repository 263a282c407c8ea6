"""Frames made by a render service (``ttlesson serve``), written here: ``render --server URL`` or
``TTLESSON_SERVER``.

The render stays where it is: this process is still the only writer of its frames and manifest (lock, resume,
atomic writes, SHA-256, ``verify`` as ever); the service only makes pixels. The client keeps as many frames in
flight as the service has devices for its model (at most ``devices``), streams each frame's queue place and
steps, and records which service, host and device made it. A frame whose device died is made again by the
service; a service that stops answering is waited for (``TTLESSON_SERVER_WAIT`` seconds, default 600), then the
frames go on. Ctrl-C closes the connections, and the service drops this client's waiting frames, nobody else's.
The token (``TTLESSON_SERVER_TOKEN`` or the file ``TTLESSON_SERVER_TOKEN_FILE``) is sent, never shown or stored.
"""

from __future__ import annotations

import getpass
import queue
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from .. import env
from ..errors import BackendUnavailableError, TTLessonError
from ..models import ModelSpec
from .base import Backend, FrameRequest, MadeImage

if TYPE_CHECKING:
    import httpx

DEFAULT_WAIT_SECONDS = 600.0
RETRY_SECONDS = 1.0


class ServiceGoneError(TTLessonError):
    """The service stopped answering and did not come back in time."""


def server_url(given: str | None = None) -> str | None:
    """The service to use: ``given`` (``--server``), else ``TTLESSON_SERVER``; None for a local render."""
    source = "--server" if given is not None else f"{env.SERVER}="
    url = (given if given is not None else env.text(env.SERVER)).strip()
    if not url:
        return None
    if "://" not in url:
        url = "http://" + url
    if not url.startswith(("http://", "https://")) or "@" in url.split("/")[2] or not url.split("/")[2]:
        shown = url if "@" not in url else url.split("//")[0] + "//…@" + url.rsplit("@", 1)[1]  # no password shown
        raise BackendUnavailableError(f"{source} {shown[:80]} is not an http:// or https:// address of a render "
                                      "service (without a user or password in it); give the URL ttlesson serve "
                                      "printed, e.g. http://127.0.0.1:8470, and the token in TTLESSON_SERVER_TOKEN.")
    return url.rstrip("/")


def server_token() -> str | None:
    """The token from ``TTLESSON_SERVER_TOKEN``, else from the file ``TTLESSON_SERVER_TOKEN_FILE``."""
    token = env.text(env.SERVER_TOKEN)
    if token:
        return token
    path = env.path(env.SERVER_TOKEN_FILE)
    if path is None:
        return None
    from .protocol import read_token

    return read_token(path, env.SERVER_TOKEN_FILE)


class RemoteBackend(Backend):
    """A render service's devices behind the ``Backend`` interface. ``connect`` (one status request) settles
    ``name`` and ``precision`` (the service's, recorded in the manifest) before anything is loaded."""

    reports_steps = True
    warm_up_note = "warm-up"

    def __init__(self, spec: ModelSpec, url: str, token: str | None = None, devices: int | str | None = None):
        super().__init__(spec)
        self.url, self._token, self._devices = url, token, devices
        self._client: httpx.Client | None = None
        self._model: dict = {}
        self._status: dict = {}

    # --- connecting ---------------------------------------------------------------------------------------------

    def connect(self) -> RemoteBackend:
        if self._client is None:
            import httpx

            headers = {"X-TTLesson-Client": _client_name(), "User-Agent": "ttlesson"}
            if self._token:
                headers["Authorization"] = f"Bearer {self._token}"
            self._client = httpx.Client(base_url=self.url, headers=headers,
                                        timeout=httpx.Timeout(30.0, read=None), trust_env=False)
        self._status = self._get_status()
        held = self._status.get("models", {})
        if self.spec.name not in held:
            raise BackendUnavailableError(
                f"The service at {self.url} does not hold model {self.spec.name!r}; it holds "
                f"{', '.join(sorted(held)) or 'none right now'}: give --model "
                f"{next(iter(sorted(held)), 'tiny')}, or leave --server out to render here.")
        self._model = held[self.spec.name]
        self.name = self._model["backend"]
        return self

    def _get_status(self) -> dict:
        import httpx

        assert self._client is not None  # connect made it
        try:
            response = self._client.get("/v1/status")
        except httpx.HTTPError as err:
            raise BackendUnavailableError(f"The render service at {self.url} cannot be reached ({_reason(err)}); "
                                          "is ttlesson serve running there? Or leave --server (TTLESSON_SERVER) out "
                                          "to render on this machine.") from None
        _raise_for_refusal(response, self.url)
        return response.json()

    @property
    def precision(self) -> str:
        return self._model.get("precision", "")

    @property
    def device(self) -> str:
        kinds = sorted({device["device"] for device in self._status.get("devices", ())
                        if device.get("model") == self.spec.name})
        return f"{self.parallel} device(s) ({', '.join(kinds)}) of the render service at {self.url}"

    @property
    def parallel(self) -> int:
        offered = int(self._model.get("devices", 1)) or 1
        cap = self._status.get("per_client")
        if cap:
            offered = min(offered, int(cap))
        if isinstance(self._devices, int):
            offered = min(offered, self._devices)
        return max(1, offered)

    @property
    def progress_note(self) -> str:
        return f"frames are made by the render service at {self.url}, {self.parallel} at a time"

    def load(self) -> None:
        self.connect()

    def check_request(self, request: FrameRequest) -> None:
        """What the service cannot make is refused there, in the sentence a local render gives (a 4xx)."""

    @property
    def max_prompt_tokens(self) -> int:
        return int(self._model.get("max_prompt_tokens", 77))

    def count_tokens(self, text: str) -> int:
        if self._client is None:
            self.connect()
        assert self._client is not None  # connect made it
        response = self._client.post("/v1/tokens", json={"model": self.spec.name, "texts": [text]})
        if response.status_code == 501:  # the service's backend cannot count them either (Backend.count_tokens)
            raise NotImplementedError(response.text)
        _raise_for_refusal(response, self.url)
        return int(response.json()["counts"][0])

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def generate(self, request: FrameRequest, on_step=None):
        """One frame, as a PIL image (the interactive widget's way)."""
        import io

        from PIL import Image

        made = next(iter(self.generate_many([(0, request)], on_step=lambda i, s, t: on_step and on_step(s, t))))
        with Image.open(io.BytesIO(made.png())) as image:
            return image.convert("RGB")

    # --- frames ---------------------------------------------------------------------------------------------

    def generate_many(self, items: Iterable[tuple[int, FrameRequest]], on_start=None,
                      on_step=None) -> Iterator[MadeImage]:
        """Keep ``parallel`` frames at the service; yield each as its PNG arrives. Callbacks run in this thread."""
        if self._client is None:
            self.connect()
        events: queue.Queue = queue.Queue()
        waiting = list(items)
        waiting.reverse()
        stop = threading.Event()
        # one frame more than devices: the next one waits at the service, so a device never idles while this
        # process writes the last PNG; and a finished frame's replacement is sent before it is written
        ahead = self.parallel + 1
        pool = ThreadPoolExecutor(ahead, thread_name_prefix="ttlesson-frame")
        running = 0

        def top_up() -> None:
            nonlocal running
            while waiting and running < ahead:
                index, request = waiting.pop()
                pool.submit(self._one_frame, index, request, events.put, stop)
                running += 1

        try:
            top_up()
            while running:
                kind, index, data = events.get()
                if kind == "started" and on_start is not None:
                    on_start(index, data)
                elif kind == "step" and on_step is not None:
                    on_step(index, data["step"], data["total"])
                elif kind == "note" and self.on_wait is not None:
                    self.on_wait(index, data)
                elif kind == "failed":
                    raise data
                elif kind == "made":
                    running -= 1
                    top_up()
                    yield data
        finally:
            stop.set()
            self.close()  # open streams end now: the service drops this client's waiting frames
            pool.shutdown(wait=True, cancel_futures=True)

    def _one_frame(self, index: int, request: FrameRequest, tell, stop: threading.Event) -> None:
        try:
            tell(("made", index, self._frame(index, request, tell, stop)))
        except BaseException as err:  # noqa: BLE001 - handed to the render's thread, which raises it
            tell(("failed", index, err if not stop.is_set() else KeyboardInterrupt()))

    def _frame(self, index: int, request: FrameRequest, tell, stop: threading.Event) -> MadeImage:
        import httpx

        from .protocol import NDJSON, FrameOrder, png_of, read_event

        body = FrameOrder(self.spec.name, request).to_dict()
        patience = _wait_seconds()
        gone_since = None
        told_place = False
        while True:
            try:
                assert self._client is not None  # generate_many connected it (None only after close)
                with self._client.stream("POST", "/v1/frames", json=body, headers={"Accept": NDJSON}) as response:
                    if response.status_code != 200:
                        response.read()
                        _raise_for_refusal(response, self.url)
                    gone_since = None
                    for line in response.iter_lines():
                        if not line.strip():
                            continue
                        event = read_event(line)
                        kind = event["event"]
                        if kind == "queued" and event["position"] > 1 and not told_place:
                            told_place = True  # once per frame: a log of a long queue stays readable
                            tell(("note", index, f"frame {index:03d} is number {event['position']} in the "
                                                 "service's queue"))
                        elif kind == "started":
                            tell(("started", index, _where(event, self.url)))
                        elif kind == "step":
                            tell(("step", index, event))
                        elif kind == "lost":
                            tell(("note", index, f"frame {index:03d}: its device {event['actor']} on "
                                                 f"{event['host']} died; the service makes it again elsewhere"))
                        elif kind == "error":
                            raise BackendUnavailableError(event["message"])
                        elif kind == "done":
                            return MadeImage(index, png_of(event), _where(event, self.url), float(event["seconds"]))
                raise httpx.RemoteProtocolError("the stream ended before the frame")
            except (httpx.TransportError, ValueError) as err:
                if stop.is_set() or self._client is None:
                    raise KeyboardInterrupt from None
                gone_since = gone_since or time.monotonic()
                waited = time.monotonic() - gone_since
                if waited > patience:
                    raise ServiceGoneError(f"The render service at {self.url} stopped answering ({_reason(err)}) and "
                                           f"did not come back in {patience:.0f} s; the frames made so far are "
                                           "saved: run the same command again when it is back.") from None
                tell(("note", None, f"the render service at {self.url} is not answering ({_reason(err)}); "
                                    f"waiting for it ({waited:.0f} s of {patience:.0f} s)"))
                stop.wait(RETRY_SECONDS)


def _where(event: dict, url: str) -> str:
    """The device as the manifest records it: the device, its actor, host and Ray node, and the service."""
    return (f"{event.get('device', '?')} [{event.get('actor', '?')} on {event.get('host', '?')} node "
            f"{event.get('node', '?')}, ttlesson serve at {url}]")


def _raise_for_refusal(response, url: str) -> None:
    if response.status_code < 400:
        return
    try:
        sentence = response.json().get("detail") or response.text
    except ValueError:
        sentence = response.text.strip()[:300] or f"HTTP {response.status_code}"
    if response.status_code == 401:
        raise BackendUnavailableError(f"The render service at {url} refused this client: {sentence}")
    raise BackendUnavailableError(sentence)


def _reason(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return text[0][:200] if text else type(err).__name__


def _client_name() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "someone"
    return f"{user}@{socket.gethostname()}"


def _wait_seconds() -> float:
    text = env.text(env.SERVER_WAIT)
    try:
        return max(0.0, float(text)) if text else DEFAULT_WAIT_SECONDS
    except ValueError:
        raise BackendUnavailableError(f"{env.SERVER_WAIT}={text!r} is not a number of seconds; give e.g. 600.") \
            from None


def local_or_remote(name: str, spec: ModelSpec, device: str | None = None, server: str | None = None) -> Backend:
    """The engine a notebook keeps loaded: the render service's at ``server`` (default: ``TTLESSON_SERVER``;
    connected), else the backend ``name`` of this machine (not loaded)."""
    url = server_url(server) if server else server_url()
    if url is None:
        from . import create

        return create(name, spec, device=device)
    return RemoteBackend(spec, url, server_token()).connect()
