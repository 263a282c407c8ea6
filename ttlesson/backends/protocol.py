"""What client and service say to each other over HTTP, in one place: the frame request as JSON (every field of
``FrameRequest``, checked as a local render checks it), tt-inference-server's ``/v1/images/generations`` request,
and the events a frame's stream carries. Light: the client imports it, so it loads no Ray and no torch.

A frame's stream is one JSON object per line (``application/x-ndjson``):

* ``{"event": "queued", "position": 3}``: waiting; 3 frames go out before it (sent again when it moves)
* ``{"event": "started", "device": "cpu", "actor": "cpu#1", "host": "studio-2"}``
* ``{"event": "step", "step": 4, "total": 10}``
* ``{"event": "done", "png": "<base64>", "device": …, "actor": …, "host": …, "seconds": 1.23}``
* ``{"event": "error", "status": 422, "message": "one sentence"}``
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import cast

from ..errors import TTLessonError
from ..fileio import read_user_file
from ..inputs import MAX_SIDE, real_number, shown, whole_number
from ..storyboard import MAX_SEED
from .base import FrameRequest

API = "/v1"
NDJSON = "application/x-ndjson"
MAX_BODY = 256 * 1024  # a frame request is a few hundred bytes; far bigger is not one
MAX_TOKEN_FILE = 64 * 1024  # a token is a line
MAX_PROMPT_CHARS = 4096  # CLIP reads 77 tokens; a prompt this long is a mistake, not a prompt
MAX_STEPS = 1000
DEFAULT_PORT = 8470


class RequestError(TTLessonError):
    """A request the service refuses: ``status`` is the HTTP status, the message the one sentence."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class FrameOrder:
    """One frame a client asks for: the model it must be made with and the request itself."""

    model: str
    request: FrameRequest

    def to_dict(self) -> dict:
        return {"model": self.model, "request": asdict(self.request)}


def read_body(raw: bytes) -> dict:
    """The request's JSON object, or a ``RequestError`` naming what is wrong with it."""
    if len(raw) > MAX_BODY:
        raise RequestError(f"The request is {len(raw):,} bytes; a frame request is at most {MAX_BODY:,} "
                           "(is a prompt pasted many times over?).", 413)
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as err:
        raise RequestError(f"The request is not JSON ({str(err).split(':')[0]}); send a JSON object.", 400) \
            from None
    if not isinstance(body, dict):
        raise RequestError(f"The request is JSON but not an object ({type(body).__name__}); send a JSON object.",
                           400)
    return body


def order_from_json(body: dict) -> FrameOrder:
    """A ``FrameOrder`` from ttlesson's own request: ``{"model": "tiny", "request": {FrameRequest's fields}}``."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise RequestError('The request names no "model" (a name such as tiny or sd14).')
    request = body.get("request")
    if not isinstance(request, dict):
        raise RequestError('The request has no "request" object with the frame\'s prompt, seed, steps, guidance, '
                           "width and height.")
    known = {field.name for field in fields(FrameRequest)}
    unknown = sorted(set(request) - known)
    if unknown:
        raise RequestError(f"The frame request has fields ttlesson does not know ({', '.join(map(repr, unknown))}); "
                           f"it takes {', '.join(sorted(known))}.")
    missing = [name for name in ("prompt", "seed", "steps", "guidance", "width", "height") if name not in request]
    if missing:
        raise RequestError(f"The frame request is missing {', '.join(missing)}.")
    return FrameOrder(model, checked_request(request))


def order_from_openai_style(body: dict, model: str, defaults: FrameRequest) -> FrameOrder:
    """A ``FrameOrder`` from tt-inference-server's ``POST /v1/images/generations`` body (prompt,
    negative_prompt, num_inference_steps, seed, guidance_scale, image_return_format, number_of_images)."""
    prompt = body.get("prompt")
    if not isinstance(prompt, str):
        raise RequestError(f'"prompt" must be text, not {shown(prompt)}.')
    image_format = body.get("image_return_format", "PNG")
    if not isinstance(image_format, str) or image_format.upper() != "PNG":
        raise RequestError(f'image_return_format {shown(image_format)} is not made here; ask for "PNG".')
    count = body.get("number_of_images", 1)
    if count != 1:
        raise RequestError(f"number_of_images {shown(count)}: this service makes one image per request; send "
                           "one request per image (each with its own seed).")
    seed = body.get("seed")
    request = {
        "prompt": prompt,
        "negative_prompt": body.get("negative_prompt") or None,
        "seed": defaults.seed if seed is None else seed,
        "steps": body.get("num_inference_steps", defaults.steps),
        "guidance": body.get("guidance_scale", defaults.guidance),
        "width": body.get("width", defaults.width),
        "height": body.get("height", defaults.height),
    }
    return FrameOrder(model, checked_request(request))


def checked_request(values: dict) -> FrameRequest:
    """A ``FrameRequest`` whose every field is checked, in the words a local render uses for the same value."""

    def text(name: str, optional: bool = False) -> str | None:
        value = values.get(name)
        if value is None and optional:
            return None
        if not isinstance(value, str):
            raise RequestError(f"{name} must be text, not {shown(value)}.")
        if len(value) > MAX_PROMPT_CHARS:
            raise RequestError(f"{name} is {len(value):,} characters; the text encoder reads about 77 tokens, so "
                               f"keep it under {MAX_PROMPT_CHARS:,} characters.", 413)
        return value

    def number(check, *args):
        return check(*args, error=RequestError)

    def side(name: str) -> int:
        value = number(whole_number, values.get(name), name, 64, MAX_SIDE)
        if value % 8:
            raise RequestError(f"{name} {value} is not a multiple of 8; Stable Diffusion's sizes are (e.g. "
                               f"{value // 8 * 8 or 64}).")
        return value

    request = FrameRequest(
        prompt=cast(str, text("prompt")),  # not optional: text raises instead of returning None
        negative_prompt=text("negative_prompt", optional=True),
        seed=number(whole_number, values.get("seed"), "Seed", 0, MAX_SEED),
        steps=number(whole_number, values.get("steps"), "Steps", 1, MAX_STEPS),
        guidance=number(real_number, values.get("guidance"), "Guidance", 0, 50),
        width=side("width"),
        height=side("height"),
        scheduler=values.get("scheduler", "default"),
        to_prompt=text("to_prompt", optional=True),
        to_negative_prompt=text("to_negative_prompt", optional=True),
        to_seed=None if values.get("to_seed") is None else number(whole_number, values["to_seed"], "to_seed", 0,
                                                                   MAX_SEED),
        weight=number(real_number, values.get("weight", 0.0), "weight", 0, 1),
        noise_base=None if values.get("noise_base") is None else number(whole_number, values["noise_base"],
                                                                         "noise_base", 0, MAX_SEED),
        noise_mix=number(real_number, values.get("noise_mix", 0.0), "noise_mix", 0, 1),
    )
    if not isinstance(request.scheduler, str):
        raise RequestError(f"scheduler must be a name, not {shown(request.scheduler)}.")
    if request.to_prompt is None and (request.weight or request.to_seed is not None):
        raise RequestError("A walk's in-between (weight, to_seed) needs to_prompt, the keyframe it walks to.")
    return request


def read_token(path, named: str) -> str:
    """The token in the file ``path`` (``named``: how the message names where the path came from), stripped."""
    try:
        token = read_user_file(Path(path), named, MAX_TOKEN_FILE).decode("utf-8").strip()
    except UnicodeDecodeError as err:
        raise TTLessonError(f"{named} {path} is not UTF-8 text (byte {err.start}); point it at the file holding "
                            "the service's token.") from None
    if not token:
        raise TTLessonError(f"{named} {path} is empty; write the service's token into it.")
    return token


# --- events --------------------------------------------------------------------------------------------------

def event_line(event: str, **data) -> bytes:
    return (json.dumps({"event": event, **data}, allow_nan=False) + "\n").encode()


def done_line(png: bytes, **data) -> bytes:
    return event_line("done", png=base64.b64encode(png).decode("ascii"), **data)


def read_event(line: bytes | str) -> dict:
    event = json.loads(line)
    if not isinstance(event, dict) or not isinstance(event.get("event"), str):
        raise ValueError("not an event")
    return event


def png_of(event: dict) -> bytes:
    return base64.b64decode(event["png"], validate=True)


def seconds(value: float) -> float:
    return round(value, 4) if math.isfinite(value) else 0.0
