"""The notebooks' widgets: ``NotebookProgress`` (a render's progress, with a gallery) and Step 7's ``PromptStudio``.

The studio's prompt box: type a prompt, pick a seed and steps, press Generate, see the frame.

The model is loaded once per kernel and stays loaded between prompts (and between studios on the same model).
"Add to storyboard" appends the prompt and its seed to the storyboard file, so a good find goes straight into
the video. Errors show inside the widget; the widget keeps working.
"""

from __future__ import annotations

import html
import os
import time
from pathlib import Path

from .. import models
from .. import storyboard as storyboard_mod
from ..backends import Backend, FrameRequest, resolve_name
from ..errors import TTLessonError
from ..frames import encode_png
from ..inputs import parse_size
from ..manifest import frame_filename, frames_dir
from ..progress import (
    Event,
    FrameDone,
    FrameStarted,
    LongRunWatch,
    ModelLoaded,
    RenderFinished,
    RenderStarted,
    StepDone,
    Waiting,
    WarmedUp,
    WorkerStarted,
)
from ..tenstorrent.boards import device_notice
from ..tenstorrent.speeds import duration

_LOADED: dict[tuple, Backend] = {}  # one loaded backend per (model, backend, device) for the kernel's lifetime


def _loaded_key(model: str, backend: str, device: str | None, server: str | None = None) -> tuple:
    from ..backends.remote import server_url

    return (model, resolve_name(backend), device, server_url(server) if server else server_url())


def loaded_backend(model: str = "sd14", backend: str = "auto", device: str | None = None,
                   server: str | None = None) -> Backend:
    """A loaded backend for ``model``, loaded on first use and reused afterwards (the render service's at
    ``server``, default ``TTLESSON_SERVER``, when one is set)."""
    from ..backends.remote import local_or_remote

    key = _loaded_key(model, backend, device, server)
    if key not in _LOADED:
        engine = local_or_remote(key[1], models.resolve(model), device=device, server=key[3])
        engine.load()
        _LOADED[key] = engine
    return _LOADED[key]


class PromptStudio:
    """The interactive widget. ``display(studio)`` shows it; ``studio.generate()`` is what the button calls."""

    def __init__(self, storyboard_path: str | os.PathLike, model: str = "sd14", backend: str = "auto",
                 device: str | None = None, steps: int | None = None, size: int | str | None = None,
                 seed: int = 0, server: str | None = None):
        import ipywidgets as w

        self.storyboard_path = Path(storyboard_path)
        self.model, self.backend_name, self.device, self.server = model, backend, device, server
        spec = models.resolve(model)
        self.width, self.height = parse_size(size) if size else (spec.width, spec.height)
        self.guidance = spec.guidance
        self.prompt = w.Textarea(placeholder="Describe the frame…", layout=w.Layout(width="100%", height="4em"))
        self.seed = w.BoundedIntText(value=seed, min=0, max=storyboard_mod.MAX_SEED, description="seed")
        self.steps = w.IntSlider(value=steps or spec.steps, min=1, max=max(100, steps or spec.steps),
                                 description="steps")
        self.generate_button = w.Button(description="Generate", button_style="primary", icon="paint-brush")
        self.add_button = w.Button(description="Add to storyboard", icon="plus", disabled=True,
                                   layout=w.Layout(width="auto"))  # the default width cuts the label off
        self.status = w.HTML()
        self.image = w.Image(format="png", layout=w.Layout(max_width=f"{self.width}px"))
        self.generate_button.on_click(lambda _: self.generate())
        self.add_button.on_click(lambda _: self.add_to_storyboard())
        self.widget = w.VBox([self.prompt, w.HBox([self.seed, self.steps]),
                              w.HBox([self.generate_button, self.add_button]), self.status, self.image])
        self.last: FrameRequest | None = None

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    def generate(self) -> bool:
        """Make the frame for the current prompt, seed and steps; returns False (and says why) on failure.

        Both buttons are disabled while it runs: a second press cannot start another frame, and Add cannot add a
        prompt whose frame is not made yet.
        """
        text = self.prompt.value.strip()
        if not text:
            return self._fail("Type a prompt first.")
        request = FrameRequest(prompt=text, seed=self.seed.value, steps=self.steps.value, guidance=self.guidance,
                               width=self.width, height=self.height)
        self.generate_button.disabled = self.add_button.disabled = True
        try:
            loading = not self._is_loaded()
            if loading:
                self._say(f"loading {self.model}…")
            load_started = time.perf_counter()
            engine = loaded_backend(self.model, self.backend_name, self.device, self.server)
            load_seconds = time.perf_counter() - load_started if loading else None
            self._say("generating…")
            started = time.perf_counter()
            image = engine.generate(request, on_step=lambda step, total: self._step(step, total, started))
            self.image.value = encode_png(image)
            self.last = request
            loaded = (f", after loading the model in {load_seconds:.1f} s" if load_seconds is not None
                      else " (the model was already loaded)")
            self._say(f"seed {request.seed}, {request.steps} steps: {time.perf_counter() - started:.1f} s on "
                      f"{engine.device}{loaded}")
            return True
        except TTLessonError as err:
            return self._fail(str(err))
        except Exception as err:  # the widget must survive anything a generation throws
            return self._fail(f"{type(err).__name__}: {err}")
        finally:
            self.generate_button.disabled = False
            self.add_button.disabled = self.last is None

    @property
    def status_text(self) -> str:
        """The status line as plain text."""
        import html
        import re

        return html.unescape(re.sub(r"<[^>]+>", "", self.status.value))

    def _step(self, step: int, total: int, started: float) -> None:
        left = (time.perf_counter() - started) / step * (total - step) if step else 0.0
        self._say(f"step {step}/{total}" + (f" · about {duration(left)} left" if left >= 10 else ""))

    def add_to_storyboard(self) -> bool:
        """Append the last generated prompt and its seed to the storyboard file (created if missing)."""
        if self.last is None:
            return self._fail("Generate a frame first; its prompt and seed are what gets added.")
        try:
            last = self.last
            board = storyboard_mod.update_file(self.storyboard_path,
                                               lambda board: board.append(last.prompt, seed=last.seed))
        except TTLessonError as err:
            return self._fail(str(err))
        self._say(f"added as frame {len(board) - 1} of {self.storyboard_path.name}")
        return True

    def _is_loaded(self) -> bool:
        return _loaded_key(self.model, self.backend_name, self.device, self.server) in _LOADED

    def _say(self, text: str) -> None:
        import html

        self.status.value = html.escape(text)

    def _fail(self, text: str) -> bool:
        import html

        self.status.value = f'<span style="color:#b00020">{html.escape(text)}</span>'
        return False


class NotebookProgress:
    """Notebook display: a bar over frames, a bar over the current frame's steps, a line with the device,
    seconds per frame and ETA, and (optionally) a gallery where frames appear as they finish.

    Built from ipywidgets; the final state stays visible after the run. Show it with ``display(progress)``.
    """

    def __init__(self, gallery: bool = True, thumbnail: int = 128):
        import ipywidgets as w

        self.thumbnail = thumbnail
        self.notice = w.HTML()
        self.warning = w.HTML()
        self.frames_bar = w.IntProgress(value=0, min=0, max=1, description="frames", bar_style="info")
        self.steps_bar = w.IntProgress(value=0, min=0, max=1, description="steps")
        self.status = w.HTML()
        self.gallery = w.Box(layout=w.Layout(display="flex", flex_flow="row wrap")) if gallery else None
        parts = [self.notice, self.warning, self.frames_bar, self.steps_bar, self.status] + (
            [self.gallery] if gallery else [])
        self.widget = w.VBox(parts)
        self.plan: RenderStarted | None = None
        self.device = ""
        self.thumbnails: dict[int, object] = {}  # frame index → its ipywidgets.Image in the gallery
        self.watch = LongRunWatch()

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    def __call__(self, event: Event) -> None:
        warning = self.watch(event)
        if warning:
            self.warning.value = f'<span style="color:#b26a00"><b>{html.escape(warning)}</b></span>'
        if isinstance(event, RenderStarted):
            self._started(event)
        elif isinstance(event, ModelLoaded):
            self._loaded(event)
        elif isinstance(event, WorkerStarted):
            self.status.value = f"worker {event.worker} loaded the model in {event.seconds:.1f} s on {event.device}"
        elif isinstance(event, WarmedUp):
            self.status.value = f"{event.what} in {event.seconds:.1f} s (once per run; later frames reuse it)"
        elif isinstance(event, Waiting):
            self.status.value = event.why
        elif isinstance(event, FrameStarted):
            self.steps_bar.description = f"frame {event.index:03d}"
            self.steps_bar.value = 0
        elif isinstance(event, StepDone):
            self.steps_bar.max = event.steps
            self.steps_bar.value = event.step
        elif isinstance(event, FrameDone):
            self.steps_bar.value = self.steps_bar.max  # a service reports steps sparsely: the frame is done
            self.frames_bar.value = event.position
            self.status.value = (f"frame {event.position}/{event.count} made in {event.seconds:.1f} s · "
                                 f"{event.seconds_per_frame:.1f} s/frame · ETA {event.eta_seconds:.0f} s · "
                                 f"on {self.device}")
            self._add_thumbnail(event.path, event.index)
        elif isinstance(event, RenderFinished):
            self._finished(event)

    def _started(self, event: RenderStarted) -> None:
        self.plan = event
        self.frames_bar.max = max(1, len(event.to_make))
        self.frames_bar.value = 0
        self.status.value = (f"{event.total} frames: {len(event.kept)} already made, {len(event.to_make)} to make "
                             f"with {event.model} ({event.steps} steps, {event.width}×{event.height}); "
                             "loading the model…" if event.to_make else f"all {event.total} frames already made")
        for index in event.kept:
            self._add_thumbnail(frames_dir(event.out_dir) / frame_filename(index), index)

    def _loaded(self, event: ModelLoaded) -> None:
        self.device = event.device
        notice = device_notice(event.device)
        self.notice.value = (f"<b>{html.escape(notice)}</b>" if notice else
                             f"Frames are made on Tenstorrent hardware: <b>{html.escape(event.device)}</b>.")
        if not event.reports_steps:
            self.steps_bar.layout.display = "none"
            note = event.note or "progress is shown per frame"
            self.notice.value += f" {html.escape(note[:1].upper() + note[1:]).rstrip('.')}."
        self.status.value = f"model loaded in {event.seconds:.1f} s on {event.device}"

    def _finished(self, event: RenderFinished) -> None:
        self.frames_bar.bar_style = "success"
        if self.plan is not None and not self.plan.to_make:
            self.frames_bar.value = self.frames_bar.max
        where = f" on {event.device}" if event.device else ""
        self.status.value = f"done: {len(event.made)} made{where}, {len(event.kept)} kept, {event.seconds:.1f} s"

    def _add_thumbnail(self, path: Path, index: int) -> None:
        if self.gallery is None or not Path(path).is_file():
            return
        import ipywidgets as w

        # No tooltip: JupyterLab's ImageView fails to render an Image widget that has one (seen in Chromium).
        self.thumbnails[index] = w.Image(value=Path(path).read_bytes(), format="png", width=str(self.thumbnail),
                                         height=str(self.thumbnail))
        self.gallery.children = tuple(self.thumbnails[i] for i in sorted(self.thumbnails))
