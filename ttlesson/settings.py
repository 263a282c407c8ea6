"""The settings the notebooks read from the environment, so one set of notebooks serves a TT workshop, a laptop
and CI (which runs them small and offline). Each value remembers where it came from, and notebooks print them.

| variable            | default                              | meaning                                  |
| ------------------- | ------------------------------------ | ---------------------------------------- |
| ``TTLESSON_MODEL``   | ``sd14``                             | model name or local diffusers folder     |
| ``TTLESSON_BACKEND`` | ``auto``                             | ``auto``, ``torch`` or ``tt``            |
| ``TTLESSON_WORKDIR`` | ``~/tt-scratchpad/worldsfair-video`` | where prompts, frames and the video go   |
| ``TTLESSON_STEPS``   | the model's own (sd14: 50)           | denoising steps                          |
| ``TTLESSON_SIZE``    | the model's own (sd14: 512)          | frame size, ``512`` or ``768x512``       |
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import TTLessonError

DEFAULT_WORKDIR = "~/tt-scratchpad/worldsfair-video"  # the lesson's own folder


@dataclass(frozen=True)
class Setting:
    name: str
    value: str | int | None
    source: str  # "environment (TTLESSON_MODEL)" or "default"


@dataclass(frozen=True)
class Settings:
    model: Setting
    backend: Setting
    workdir: Setting
    steps: Setting
    size: Setting

    @property
    def items(self) -> list[Setting]:
        return [self.model, self.backend, self.workdir, self.steps, self.size]

    @property
    def render_kwargs(self) -> dict:
        """Keyword arguments for ``ttlesson.render.render``."""
        return {"model": self.model.value, "backend": self.backend.value, "steps": self.steps.value,
                "size": self.size.value}

    @property
    def workdir_path(self) -> Path:
        return Path(str(self.workdir.value)).expanduser()

    def __str__(self) -> str:
        return "\n".join(f"{s.name:<8} {_shown(s.value):<36} ({s.source})" for s in self.items)

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><td><code>{s.name}</code></td><td><code>{html.escape(_shown(s.value))}</code></td>"
                       f"<td>{html.escape(s.source)}</td></tr>" for s in self.items)
        return f"<table><tr><th>setting</th><th>value</th><th>from</th></tr>{rows}</table>"


def current() -> Settings:
    """The settings in force now, read from the environment."""
    return Settings(
        model=_read("model", "TTLESSON_MODEL", "sd14"),
        backend=_read("backend", "TTLESSON_BACKEND", "auto"),
        workdir=_read("workdir", "TTLESSON_WORKDIR", DEFAULT_WORKDIR),
        steps=_read_steps(),
        size=_read("size", "TTLESSON_SIZE", None),
    )


def _read(name: str, variable: str, default):
    value = os.environ.get(variable, "").strip()
    if value:
        return Setting(name, value, f"environment ({variable})")
    return Setting(name, default, "default" if default is not None else "default: the model's own")


def _read_steps() -> Setting:
    setting = _read("steps", "TTLESSON_STEPS", None)
    if setting.value is None:
        return setting
    if not str(setting.value).isdigit() or int(setting.value) < 1:
        raise TTLessonError(f"TTLESSON_STEPS={setting.value!r} is not a whole number of steps; "
                            "set it to e.g. 20, or unset it to use the model's own.")
    return Setting(setting.name, int(setting.value), setting.source)


def _shown(value) -> str:
    return "(model's own)" if value is None else str(value)
