"""The service's HTTP API (Starlette, served by uvicorn), every route behind the token check:

* ``GET  /v1/status``: models held, devices (what each is doing, for whom), the queue by client
* ``POST /v1/frames``: one frame (``protocol.FrameOrder``); streams its events as NDJSON, or with
  ``Accept: image/png`` answers the PNG itself (``X-TTLesson-Device``, ``-Host``, ``-Actor``, ``-Seconds``)
* ``POST /v1/tokens``: how many tokens the model's text encoder sees in each text
* ``POST /v1/images/generations``: tt-inference-server's request (prompt, negative_prompt, num_inference_steps,
  seed, guidance_scale, image_return_format PNG), answered as it answers: ``{"images": [base64 PNG],
  "generation_time": s}``

Access: with tokens set, a request without ``Authorization: Bearer <token>`` gets 401 and nothing else. A named
token (``--tokens FILE``) is its client's name; with one shared token, the client names itself
(``X-TTLesson-Client``). Bad input gets a 4xx and one sentence (``{"detail": …}``); the service keeps serving.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import re
import time

from ..backends.base import FrameRequest
from ..backends.protocol import (
    NDJSON,
    RequestError,
    done_line,
    event_line,
    order_from_json,
    order_from_openai_style,
    read_body,
    seconds,
)
from .service import RenderService, Ticket

CLIENT_HEADER = "X-TTLesson-Client"
POSITION_SECONDS = 0.5  # how often a waiting frame's place in the queue is looked at


class Access:
    """Who may use the service: ``tokens`` maps each token to its client's name ({} : anyone, on loopback)."""

    def __init__(self, tokens: dict[str, str]):
        self._tokens = dict(tokens)

    @property
    def required(self) -> bool:
        return bool(self._tokens)

    def client(self, headers, peer: str) -> str | None:
        """The client's name, or None when a token is required and this one is missing or wrong."""
        named = _clean_name(headers.get(CLIENT_HEADER, "")) or peer
        if not self._tokens:
            return named
        scheme, _, given = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given:
            return None
        for token, name in self._tokens.items():
            if hmac.compare_digest(token.encode(), given.strip().encode()):
                return name or named
        return None


def build_app(service: RenderService, access: Access):
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    def refuse(status: int, sentence: str) -> JSONResponse:
        return JSONResponse({"detail": sentence}, status_code=status)

    def guarded(handler):
        async def route(request: Request):
            peer = request.client.host if request.client else "unknown"
            client = access.client(request.headers, peer)
            if client is None:
                return refuse(401, "This service needs a token: send Authorization: Bearer <token> (the client "
                                   "reads it from TTLESSON_SERVER_TOKEN or TTLESSON_SERVER_TOKEN_FILE).")
            try:
                return await handler(request, client)
            except RequestError as err:
                return refuse(err.status, str(err))
        return route

    async def status(request: Request, client: str):
        return JSONResponse(service.status(client))

    async def frames(request: Request, client: str):
        order = order_from_json(read_body(await request.body()))
        ticket = await service.submit(client, order)
        if "image/png" in request.headers.get("accept", ""):
            return await _whole_frame(ticket)
        return StreamingResponse(_stream(ticket), media_type=NDJSON)

    async def tokens(request: Request, client: str):
        body = read_body(await request.body())
        texts = body.get("texts")
        if not isinstance(texts, list) or not all(isinstance(text, str) for text in texts) or len(texts) > 1000:
            raise RequestError('Send {"model": …, "texts": [up to 1,000 strings]}.')
        counts = await service.count_tokens(str(body.get("model")), texts)
        return JSONResponse({"counts": counts})

    async def generations(request: Request, client: str):
        body = read_body(await request.body())
        model = body.get("model") or next(iter(service.models()), None)
        held = service.models()
        if model not in held:
            raise RequestError(f"This service does not hold model {model!r}; it holds "
                               f"{', '.join(sorted(held)) or 'none'}.", 404)
        entry = held[model]
        defaults = FrameRequest(prompt="", seed=0, steps=entry["steps"], guidance=entry["guidance"],
                                width=entry["width"], height=entry["height"])
        ticket = await service.submit(client, order_from_openai_style(body, model, defaults))
        event = await _outcome(ticket)
        if event[0] == "error":
            return refuse(event[1]["status"], event[1]["message"])
        made = event[1]
        return JSONResponse({"created": int(time.time()), "model": model,
                             "images": [base64.b64encode(made["png"]).decode("ascii")],
                             "generation_time": seconds(made["seconds"]), "device": made["device"],
                             "host": made["host"]})

    async def _whole_frame(ticket: Ticket):
        event = await _outcome(ticket)
        if event[0] == "error":
            return refuse(event[1]["status"], event[1]["message"])
        made = event[1]
        return Response(made["png"], media_type="image/png", headers={
            "X-TTLesson-Device": made["device"], "X-TTLesson-Host": made["host"],
            "X-TTLesson-Actor": made["actor"], "X-TTLesson-Seconds": f"{made['seconds']:.4f}"})

    async def _outcome(ticket: Ticket):
        try:
            while True:
                event = await ticket.events.get()
                if event[0] in ("done", "error"):
                    return event
        finally:
            service.cancel(ticket)

    async def _stream(ticket: Ticket):
        shown = None
        try:
            while True:
                place = service.position(ticket)
                if place is not None and place != shown:
                    shown = place
                    yield event_line("queued", position=place)
                try:
                    kind, data = await asyncio.wait_for(ticket.events.get(), POSITION_SECONDS)
                except asyncio.TimeoutError:
                    continue
                if kind == "done":
                    png = data.pop("png")
                    yield done_line(png, **{**data, "seconds": seconds(data["seconds"])})
                    return
                yield event_line(kind, **data)
                if kind == "error":
                    return
                shown = None if kind == "lost" else shown
        finally:
            service.cancel(ticket)  # the client went away (or the frame is done: then nothing is waiting)

    async def not_found(request: Request, exc):
        return refuse(404, f"No {request.method} {request.url.path} here; the API is under /v1 (status, frames, "
                           "tokens, images/generations).")

    async def wrong_method(request: Request, exc):
        return refuse(405, f"{request.url.path} does not take {request.method}.")

    routes = [Route("/v1/status", guarded(status), methods=["GET"]),
              Route("/v1/frames", guarded(frames), methods=["POST"]),
              Route("/v1/tokens", guarded(tokens), methods=["POST"]),
              Route("/v1/images/generations", guarded(generations), methods=["POST"])]
    return Starlette(routes=routes, exception_handlers={404: not_found, 405: wrong_method})


def _clean_name(name: str) -> str:
    return re.sub(r"[^\w.@+-]", "", name)[:64]
