"""The settings the notebooks read from the environment, so one set of notebooks serves a TT workshop, a laptop
and CI (which runs them small and offline). Each value remembers where it came from, and notebooks print them.

``variables()`` lists the variables (``TTLESSON_MODEL``, ``TTLESSON_BACKEND``, ``TTLESSON_WORKDIR``,
``TTLESSON_STEPS``, ``TTLESSON_SIZE``, ``TTLESSON_SERVER``) with their defaults and what each sets, the choices
taken from the code that checks them: the model registry, the backend names, the sizes each backend makes
(``accepted_sizes``).
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Generic, TypeVar

from .. import env
from ..errors import TTLessonError
from ..fileio import writable_folder
from ..inputs import parse_size, shown, user_path
from ..presenting import SETTINGS
from .room import Room

if TYPE_CHECKING:
    from ..backends import BackendName

V = TypeVar("V")


@dataclass(frozen=True)
class Setting(Generic[V]):
    name: str
    value: V
    source: str  # "environment (TTLESSON_MODEL)" or "default"


@dataclass(frozen=True)
class Settings:
    model: Setting[str]
    backend: Setting[BackendName]
    workdir: Setting[str]
    steps: Setting[int | None]
    size: Setting[str | int | None]  # as given: "512", "768x512", or a room file's 512
    server: Setting[str | None] | None = None  # TTLESSON_SERVER: frames from a render service (shown only when set)
    room: Room | None = None  # TTLESSON_ROOM: the workshop's room file, when there is one

    @property
    def items(self) -> list[Setting]:
        return [self.model, self.backend, self.workdir, self.steps, self.size, *([self.server] if self.server else [])]

    @property
    def render_kwargs(self) -> dict:
        """Keyword arguments for ``ttlesson.render.render``."""
        return {"model": self.model.value, "backend": self.backend.value, "steps": self.steps.value,
                "size": self.size.value, "server": self.server.value if self.server else None}

    @property
    def workdir_path(self) -> Path:
        return user_path(str(self.workdir.value))

    def __str__(self) -> str:
        """One line: "Settings: tiny model, auto backend, the model's own steps and size; work folder …"."""
        steps = "the model's own steps" if self.steps.value is None else f"{self.steps.value} steps"
        size = "the model's own size" if self.size.value is None else f"size {self.size.value}"
        served = f"; frames from {self.server.value}" if self.server else ""
        room = f"; {self.room.source}" if self.room is not None else ""
        return (f"Settings: {self.model.value} model, {self.backend.value} backend, {steps}, {size}; "
                f"work folder {self.workdir.value}{served}{room}")

    def _repr_html_(self) -> str:
        meaning = {variable: sets for variable, _, sets in variables()}
        left = "style='text-align: left'"
        rows = "".join(f"<tr><td {left}><code>{VARIABLES[s.name]}</code></td><td {left}><code>"
                       f"{html.escape(_shown(s.value))}</code></td><td {left}>{html.escape(s.source)}</td>"
                       f"<td {left}>{html.escape(meaning[VARIABLES[s.name]])}</td></tr>" for s in self.items)
        heads = "".join(f"<th {left}>{name}</th>" for name in ("variable", "value", "from", "what it sets"))
        return f"<table><tr>{heads}</tr>{rows}</table>"


VARIABLES = {name: variable for name, (variable, _flag) in SETTINGS.items()} | {"workdir": env.WORKDIR}


def accepted_sizes() -> dict[str, str]:
    """The frame sizes each backend makes, in words, from the sizes the backends check: tt-metal's traced SD 1.4
    makes one size only (its SD 3.5 Large another); torch any width × height in multiples of 8."""
    from ..backends.tt.chip import SIZE as TT_SD14_SIZE
    from ..backends.tt.sd35 import SIZE as TT_SD35_SIZE
    from ..inputs import MAX_SIDE

    return {"tt": f"{TT_SD14_SIZE} only (SD 3.5 Large: {TT_SD35_SIZE})",
            "torch": f"one number (512) or width x height (768x512), multiples of 8 from 64 to {MAX_SIDE}"}


def variables() -> list[tuple[str, str, str]]:
    """The ``TTLESSON_*`` variables the notebooks read: (variable, its default, what it sets) each; step 1 shows
    them beside their values (``Settings._repr_html_``)."""
    from ..backends import BACKEND_NAMES
    from ..models import REGISTRY

    sd14 = REGISTRY["sd14"]
    sizes = "; ".join(f"on the {backend} backend {text}" for backend, text in accepted_sizes().items())
    return [
        (env.MODEL, "sd14", f"the model: {', '.join(REGISTRY)}, or a diffusers pipeline folder"),
        (env.BACKEND, "auto", f"{', '.join(name for name in BACKEND_NAMES if name != 'auto')}, or auto to choose "
                              "from what is here"),
        (env.WORKDIR, env.DEFAULT_WORKDIR, "where the prompts, frames and video go"),
        (env.STEPS, f"the model's own; {sd14.steps} for SD 1.4", "denoising steps per frame"),
        (env.SIZE, f"the model's own; {sd14.width} for SD 1.4", f"frame size: {sizes}"),
        (env.SERVER, "none: this machine makes the frames", "a render service's URL (ttlesson serve)"),
    ]


def current() -> Settings:
    """The settings in force now, read from the environment; a value that cannot work is one sentence naming
    its variable (checked here, so a notebook stops at its first cell rather than minutes later)."""
    from . import room as room_file

    room = room_file.current()
    return Settings(
        model=_read_model(room),
        backend=_read_backend(room),
        workdir=_read_workdir(room),
        steps=_read_steps(room),
        size=_read_size(room),
        server=_read_server(room),
        room=room,
    )


def _read_server(room: Room | None) -> Setting | None:
    """The render service the frames come from (``TTLESSON_SERVER``, else the room file's; its token is never
    shown), or None."""
    from ..backends.remote import server_url

    url = server_url()
    if url:
        return Setting("server", url, f"environment ({env.SERVER})")
    if room is not None and "server" in room.settings:
        return Setting("server", server_url(room.settings["server"]), room.source)
    return None


def _read(name: str, variable: str, default, room: Room | None):
    """The setting from its environment variable, else the room file, else the default."""
    value = os.environ.get(variable, "").strip()
    if value:
        return Setting(name, value, f"environment ({variable})")
    if room is not None and name in room.settings:
        return Setting(name, room.settings[name], room.source)
    return Setting(name, default, "default" if default is not None else "default: the model's own")


def _refuse(variable: str, value: str, why: str) -> TTLessonError:
    return TTLessonError(f"{variable}={shown(value)} {why}, or unset it to use the default.")


def _read_model(room: Room | None) -> Setting:
    from ..models import REGISTRY

    setting = _read("model", env.MODEL, "sd14", room)
    value = str(setting.value)
    if value in REGISTRY:
        return setting
    folder = user_path(value)
    if not folder.is_dir():
        raise _refuse(env.MODEL, value, f"is neither a model ttlesson knows ({', '.join(REGISTRY)}) nor a "
                      "folder; set it to one of those or to a diffusers pipeline folder")
    if not (folder / "model_index.json").is_file():
        raise _refuse(env.MODEL, value, "is a folder without model_index.json, so not a diffusers "
                      "pipeline; set it to a folder saved with save_pretrained")
    return setting


def _read_backend(room: Room | None) -> Setting:
    from ..backends import BACKEND_NAMES

    setting = _read("backend", env.BACKEND, "auto", room)
    if setting.value not in BACKEND_NAMES:
        raise _refuse(env.BACKEND, str(setting.value),
                      f"is not a backend; set it to {', '.join(BACKEND_NAMES[:-1])} or {BACKEND_NAMES[-1]}")
    return setting


def _read_workdir(room: Room | None) -> Setting:
    setting = _read("workdir", env.WORKDIR, env.DEFAULT_WORKDIR, room)
    path = user_path(str(setting.value))
    if path.exists() and not path.is_dir():
        raise _refuse(env.WORKDIR, str(setting.value), "names a file, not a folder; set it to a folder "
                      "(it is created if missing)")
    return setting


def make_workdir(cfg: Settings) -> None:
    """Create the work folder and prove it takes files, in a notebook's first cell, not as a traceback in the
    first cell that writes; one sentence naming the setting if not."""
    try:
        writable_folder(cfg.workdir_path, "The work folder", fills=True)
    except TTLessonError as err:
        raise TTLessonError(f"{str(err).rstrip('.')} ({env.WORKDIR} sets it, before Jupyter starts).") from None


def _read_steps(room: Room | None) -> Setting:
    setting = _read("steps", env.STEPS, None, room)
    if setting.value is None:
        return setting
    text = str(setting.value)
    if not (text.isascii() and text.isdigit() and len(text) <= 4 and 1 <= int(text) <= 1000):
        raise _refuse(env.STEPS, text, "is not a whole number of steps from 1 to 1000; set it to e.g. 20")
    return Setting(setting.name, int(text), setting.source)


def _read_size(room: Room | None) -> Setting:
    setting = _read("size", env.SIZE, None, room)
    if setting.value is None:
        return setting
    try:
        parse_size(str(setting.value))
    except TTLessonError as err:
        raise _refuse(env.SIZE, str(setting.value), f"is not a frame size; set it to {accepted_sizes()['torch']}"
                      ) from err
    return setting


def _shown(value) -> str:
    return "(model's own)" if value is None else str(value)
