"""The calls the lesson's notebooks make, so each code cell stays a line or two.

Every notebook starts with ``cfg = lesson.start(step=N)``: it reads the settings (``ttlesson.notebook.settings``,
and a workshop's room file, ``ttlesson.notebook.room``), says them in one line, says what the step will cost here
when it makes frames, and makes ttlesson's errors show as one red line instead of a traceback. Notebooks run on
their own: a step that needs the prompts or frames of an earlier step makes them if they are missing, and says so.
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

from .. import env, manifest, storyboard
from ..errors import TTLessonError, describe
from ..fileio import write_atomic
from ..render import RenderResult, render
from ..tenstorrent import silicon
from ..tenstorrent.speeds import duration
from ..video import VideoInfo, stitch
from . import room as room_file
from . import settings

THEME = "worlds-fair-day"  # step 3's theme: one the offline tiny model can draw (docs/offline-model.md)
THEME_FILE = "my-theme.txt"
WALK = "worlds-fair-walk"  # step 6's keyframes: they differ in what the tiny model blends (docs/offline-model.md)


SETTINGS_HINT = "TTLESSON_* variables set before Jupyter starts change them (step 1)"


def start(step: int | None = None) -> settings.Settings:
    """Read the settings and say them in one line; show ttlesson's errors (a bad TTLESSON_* value among them) in one
    line. ``step`` is the notebook's step: step 1 also says whether ttlesson's Tenstorrent path has run on silicon
    here; a step that makes frames says how many, and how long they take here, before it costs it."""
    _one_line_errors()
    cfg = settings.current()
    settings.make_workdir(cfg)
    lines = [f"{cfg}." if step == 1 else f"{cfg}; {SETTINGS_HINT}."]
    if step == 1:
        lines.append(silicon.note())
    cost = step_cost(cfg, step) if step is not None else None
    if cost:
        lines.append(cost)
    _say(lines)
    return cfg


def _say(lines: list[str]) -> None:
    """Print the lines; in a notebook, as a paragraph that wraps between words (JupyterLab breaks printed text
    anywhere, a path mid-word)."""
    from ..presenting import in_notebook

    if not in_notebook():
        print("\n".join(lines))
        return
    from IPython.display import HTML, display

    display(HTML("<p style='font-size: 0.9em; margin: 0'>" + "<br>".join(map(html.escape, lines)) + "</p>"))


def step_cost(cfg: settings.Settings, step: int) -> str | None:
    """One line: how many frames step ``step`` makes with these settings, and how long that takes at the time
    per frame this work folder's manifest records for the same model, size and steps (else: said after the
    first frame). None for a step that makes no frames."""
    frames = frames_made_by(cfg, step)
    if not frames:
        return None
    made = "" if cfg.server is None else " on the render service"
    each = _seconds_per_frame(cfg) if step != 10 else None  # step 10's frames are SD 3.5 Large's, not cfg.model's
    if each is None:
        when = "the time per frame shows with the first frame (none made with these settings here yet)"
    else:
        when = f"about {duration(frames * each)} at {each:.2g} s a frame, as this machine made them"
    download = _download_first(cfg, step)
    counted = f"{frames} frame" + ("s" if frames != 1 else "")
    return f"This notebook makes up to {counted}{made}{download}: {when}."


def _download_first(cfg: settings.Settings, step: int) -> str:
    """", after downloading SD 3.5 Large (about 27 GB, …)" where step 10 would download it first; else ""."""
    if step != 10:
        return ""
    from ..models import REGISTRY
    from ..setup.hf import cache_state

    sd35 = REGISTRY["sd35-large"]  # what step 10 renders (next_steps.MODEL)
    return "" if cache_state(sd35.source) == "complete" else \
        f", after downloading {sd35.name} ({sd35.download_size}, once, into the Hugging Face cache)"


def frames_made_by(cfg: settings.Settings, step: int) -> int:
    """How many frames step ``step`` makes with these settings (and the room file's), at most."""
    room = cfg.room
    if step == 3:
        path = cfg.workdir_path / THEME_FILE
        return len(storyboard.load(path if path.is_file() else THEME))
    if step == 4:
        path = storyboard_path(cfg)
        return len(storyboard.load(path if path.is_file() else "worlds-fair"))
    if step == 6:
        keyframes, gaps = _film_shape(cfg)
        return keyframes + 2 * (keyframes + (keyframes - 1) * gaps)  # the slideshow, the walk, the walk in colour
    if step == 7:
        return 1
    if step == 8:
        from ..bench import this_machine as bench

        return 0 if room is not None and not room.runs("scaling") else 6 * len(bench.device_counts())
    if step == 10:
        from .next_steps import sd35_plan

        return 0 if room is not None and not room.runs("sd35") or not sd35_plan().runnable else 2
    return 0


def _seconds_per_frame(cfg: settings.Settings) -> float | None:
    """The median seconds of the frames in the work folder's manifest made with these settings (warm-up frames
    left out), or None."""
    try:
        book = manifest.load(cfg.workdir_path)
    except TTLessonError:
        return None
    model = str(cfg.model.value)
    seconds = sorted(record.seconds for record in (book.frames.values() if book else ())
                     if record.model == model and not record.warmup and record.seconds > 0
                     and (cfg.steps.value is None or record.steps == cfg.steps.value))
    return seconds[len(seconds) // 2] if seconds else None


def _film_shape(cfg: settings.Settings) -> tuple[int, int]:
    room = cfg.room
    return (room.film_keyframes, room.film_transition_frames) if room is not None else (3, 4)


def storyboard_path(cfg: settings.Settings) -> Path:
    return cfg.workdir_path / env.STORYBOARD_FILE


def video_path(cfg: settings.Settings) -> Path:
    return cfg.workdir_path / env.VIDEO_FILE


def ensure_storyboard(cfg: settings.Settings) -> storyboard.Storyboard:
    """The work folder's prompts.json; the lesson's World's Fair storyboard is written there if there is none."""
    path = storyboard_path(cfg)
    if not path.exists():  # made under the storyboard's lock: a kernel adding a frame at this moment keeps it
        storyboard.update_file(path, lambda board: None, start=lambda: storyboard.load("worlds-fair"))
        _say([f"No {env.STORYBOARD_FILE} in {cfg.workdir_path} yet: starting from the lesson's World's Fair "
              "storyboard."])
    return storyboard.load(path)


def render_frames(cfg: settings.Settings, overwrite: bool = False, gallery: bool = True) -> RenderResult:
    """Render the work folder's storyboard with live progress (widgets in a notebook, tqdm in a terminal)."""
    return _render_shown(ensure_storyboard(cfg), cfg.workdir_path, cfg, overwrite=overwrite, gallery=gallery)


def _render_shown(board: storyboard.Storyboard, out_dir: Path, cfg: settings.Settings, **options) -> RenderResult:
    """``board`` rendered into ``out_dir`` with the notebook's settings (``options`` override them), shown live."""
    from . import for_environment

    display = for_environment(gallery=options.pop("gallery", True))
    try:
        return render(board, out_dir, on_event=display, **{**cfg.render_kwargs, **options})
    finally:
        getattr(display, "close", lambda: None)()


def theme_file(cfg: settings.Settings) -> Path:
    """The work folder's ``my-theme.txt`` for step 3's exercise, started from the shipped theme (``THEME``) when
    there is none; the learner's own edits are kept."""
    path = cfg.workdir_path / THEME_FILE
    if not path.exists():
        write_atomic(path, storyboard.builtin_path(THEME).read_text(encoding="utf-8"))
    return path


def try_theme(cfg: settings.Settings, path: str | os.PathLike) -> RenderResult:
    """Step 3's exercise: the theme file's frames, made into ``<workdir>/theme`` with the notebook's settings (a
    changed prompt remakes its frame), shown as they come."""
    return _render_shown(storyboard.load(path), cfg.workdir_path / "theme", cfg, overwrite=True)


def ensure_frames(cfg: settings.Settings) -> RenderResult | None:
    """Make the frames of step 4 when they are missing; returns the render, or None when they were all there."""
    book = manifest.load(cfg.workdir_path)
    if book is not None and book.complete:
        _say([f"All {book.frame_count} frames of step 4 are in {cfg.workdir_path}."])
        return None
    _say([f"The frames of step 4 are not all in {cfg.workdir_path} yet: making them now."])
    return render_frames(cfg, gallery=False)


def measure_scaling(cfg: settings.Settings, frames: int = 6, again: bool = False):
    """Step 8's measurement: the same frames rendered on 1, 2, … devices, with live progress per device count.

    The result is kept in ttlesson's cache: running the notebook again on this machine with the same settings shows
    that measurement (and says when it was made) instead of paying for it twice; ``again=True`` measures anew.
    """
    from ..bench import this_machine as bench
    from ..progress import RenderStarted
    from . import in_notebook
    from .widgets import NotebookProgress

    if cfg.room is not None and not cfg.room.runs("scaling"):
        saved = bench.saved_scaling(bench.scaling_key(cfg.model.value, bench.device_counts(), frames,
                                                      cfg.backend.value, cfg.steps.value, cfg.size.value))
        return saved or room_file.InstructorDemo("scaling")  # the instructor's measurement, where the cache is shared
    counts = bench.device_counts()
    key = bench.scaling_key(cfg.model.value, counts, frames, cfg.backend.value, cfg.steps.value, cfg.size.value)
    saved = None if again else bench.saved_scaling(key)
    if saved is not None:
        _say([f"Measured on this machine at {saved.measured_at} with these settings; "
              "lesson.measure_scaling(cfg, again=True) measures again."])
        return saved
    display = NotebookProgress(gallery=False) if in_notebook() else None
    heading = None
    if display is not None:
        import ipywidgets
        from IPython.display import display as show

        heading = ipywidgets.HTML()
        show(ipywidgets.VBox([heading, display.widget]))
    runs = iter(counts)

    def listen(event) -> None:
        if heading is not None and isinstance(event, RenderStarted):
            count = next(runs)
            heading.value = (f"Measuring {count} device{'s' if count != 1 else ''} "
                             f"({counts.index(count) + 1} of {len(counts)}: {', '.join(map(str, counts))})")
        if display is not None:
            display(event)

    result = bench.scaling(cfg.model.value, counts, frames=frames, backend=cfg.backend.value, steps=cfg.steps.value,
                           size=cfg.size.value, on_event=listen)
    if heading is not None:
        heading.value = f"Measured {', '.join(map(str, counts))} devices, {frames} frames each."
    bench.save_scaling(key, result)
    return result


# name → what it shows, and the render's walk and consistency arguments
FILM_VERSIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "slideshow": ("Slideshow: the keyframes, cut", {}),
    "walk": ("Walk: in-betweens from keyframe to keyframe", {"transition_frames": None}),
    "walk-colour": ("Walk + colour coherence", {"transition_frames": None, "colour": "lab"}),
}


def film_versions(cfg: settings.Settings, keyframes: int | None = None, transition_frames: int | None = None
                  ) -> dict[str, RenderResult]:
    """The first ``keyframes`` prompts of the walk storyboard (``WALK``) made three ways (``FILM_VERSIONS``), each
    into ``<workdir>/film/<name>`` (made once; remade when the settings changed: the folders are this demo's own),
    with the settings of the other steps. The sizes default to the room file's ``film`` (else 3 keyframes, 4
    in-betweens)."""
    room_keyframes, room_gaps = _film_shape(cfg)
    keyframes = room_keyframes if keyframes is None else keyframes
    transition_frames = room_gaps if transition_frames is None else transition_frames
    from .. import models
    from ..backends.remote import local_or_remote

    short = storyboard.Storyboard(frames=storyboard.load(WALK).frames[:keyframes], name="film")
    settings = dict(cfg.render_kwargs)
    results = {}
    # loaded once for all three (the render service's devices when a server is set)
    with local_or_remote(settings.pop("backend"), models.resolve(settings["model"]),
                         server=settings.pop("server")) as engine:
        for name, (_, options) in FILM_VERSIONS.items():
            options = {key: transition_frames if value is None else value for key, value in options.items()}
            results[name] = render(short, cfg.workdir_path / "film" / name, backend=engine, overwrite=True,
                                   **options, **settings)
            _say([f"{name}: {results[name]}"])
    return results


def stitch_film_versions(results: dict[str, RenderResult], seconds_per_keyframe: float = 1.5
                         ) -> dict[str, VideoInfo]:
    """Each version stitched at the same pace (``seconds_per_keyframe``), so the films last equally long."""
    return {FILM_VERSIONS[name][0]: stitch(result.out_dir, seconds_per_keyframe=seconds_per_keyframe)
            for name, result in results.items()}


def try_sd35(cfg: settings.Settings, frames: int = 2, plan=None):
    """Step 10: the storyboard's first ``frames`` prompts made with SD 3.5 Large into ``<workdir>/sd35`` where this
    machine can (``next_steps.sd35_plan``); where it cannot, the plan that says why (nothing is rendered)."""
    from .next_steps import MODEL, sd35_plan

    if cfg.room is not None and not cfg.room.runs("sd35"):
        return room_file.InstructorDemo("sd35")
    plan = plan or sd35_plan()
    if not plan.runnable:
        return plan
    first = storyboard.Storyboard(frames=ensure_storyboard(cfg).frames[:frames], name="sd35")
    return _render_shown(first, cfg.workdir_path / "sd35", cfg, model=MODEL, backend="tt", steps=None, size=None,
                         server=None)  # SD 3.5 Large's own steps and size, on this machine's mesh


def import_demo_frames(cfg: settings.Settings, src: str | os.PathLike | None = None):
    """Bring in images that tt-metal's pytest demo wrote (Step 4 done by hand), if there are any.

    ``src`` defaults to the tt-metal checkout (``$TT_METAL_HOME``, else ``~/tt-metal``), where the demo writes.
    They go to ``<workdir>/from-demo`` with the work folder's prompts; returns the ImportResult, or None.
    """
    from ..frames import DEMO_FILE, import_demo_outputs

    folder = Path(src or env.text(env.TT_METAL_HOME) or "~/tt-metal").expanduser()
    if not folder.is_dir() or not any(DEMO_FILE.match(p.name) for p in folder.iterdir()):
        _say([f"No demo images (input_data_<i>_512x512_ttnn.png) in {folder}: nothing to import."])
        return None
    result = import_demo_outputs(folder, cfg.workdir_path / "from-demo", storyboard=ensure_storyboard(cfg))
    _say([str(result)])
    return result


def _one_line_errors() -> None:
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None:
        # Still an error (nbval and "run all" stop on it), shown as the one sentence that says what to do.
        shell.set_custom_exc((TTLessonError,), lambda shell, etype, value, tb, tb_offset=None:
                             [f"\x1b[1;31m{etype.__name__}\x1b[0m: {describe(value)}"])
