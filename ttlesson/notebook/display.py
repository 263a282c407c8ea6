"""What a notebook shows: a preview of the learner's film, a frame gallery, inline video players (side by side),
a keyframe walk's strip of in-between frames, and timing charts.

Everything is embedded in the notebook's output (base64 images and video), so it shows in JupyterLab, VS Code
and a saved HTML export alike, with no file server behind it.
"""

from __future__ import annotations

import base64
import html
import io
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, cast

from .. import manifest
from ..errors import TTLessonError
from ..tenstorrent import speeds

if TYPE_CHECKING:
    from .room import InstructorDemo

# Published and claimed speeds, each with where it comes from (seconds per 512×512 SD 1.4 image, 50 steps).
REFERENCE_SPEEDS = speeds.reference_speeds()
REFERENCE_WORK = speeds.SD14_WORK
# The World's Fair storyboard as the offline tiny model makes it, stitched at 2 fps (tools/make_preview_sample.py).
SAMPLE_FILM = "preview-sample.mp4"
STRIP_MOST = 12  # thumbnails in a preview's strip of frames; a longer render is sampled evenly


@dataclass(frozen=True)
class HTMLView:
    """Rendered HTML that notebooks display and that can also be saved to a file."""

    html: str

    def _repr_html_(self) -> str:
        return self.html

    def save(self, path: str | os.PathLike) -> Path:
        Path(path).write_text(self.html, encoding="utf-8")
        return Path(path)


def gallery(out_dir: str | os.PathLike, width: int = 160, columns: int = 5) -> HTMLView:
    """The render folder's frames in a grid, each captioned with its number, prompt and seed."""
    out_dir = Path(out_dir)
    book = _manifest_or_fail(out_dir)
    cells = []
    for index, record in sorted(book.frames.items()):
        path = out_dir / record.file
        if not path.is_file():
            continue
        caption = html.escape(_shortened(record.prompt, 90))
        cells.append(
            f'<figure style="margin:4px;width:{width}px">'
            f'<img src="data:image/png;base64,{_thumbnail_base64(path, width)}" width="{width}" '
            f'alt="frame {index:03d}" title="{html.escape(record.prompt)}"/>'
            f'<figcaption style="font-size:11px;line-height:1.2"><b>{index:03d}</b> · seed {record.seed}'
            f"<br>{caption}</figcaption></figure>")
    grid = (f'<div style="display:grid;grid-template-columns:repeat({columns},{width + 8}px);gap:4px">'
            + "".join(cells) + "</div>")
    return HTMLView(grid)


def manifest_table(out_dir: str | os.PathLike) -> HTMLView:
    """The manifest as a table: per frame, its seed, settings, the device that made it and its seconds."""
    book = _manifest_or_fail(Path(out_dir))
    header = ["frame", "prompt", "seed", "steps", "size", "model", "backend", "device", "seconds"]
    words = {"prompt", "model", "backend", "device"}  # read from the left; numbers stay aligned on the right
    align = [f" style='text-align:{'left' if name in words else 'right'}'" for name in header]
    rows = []
    for index, r in sorted(book.frames.items()):
        cells = [f"{index:03d}", _shortened(r.prompt, 60), r.seed, r.steps, f"{r.width}×{r.height}", r.model,
                 r.backend, r.device, f"{r.seconds:.2f}" + (" (warm-up)" if r.warmup else "")]
        rows.append("<tr>" + "".join(f"<td{a}>{html.escape(str(c))}</td>" for a, c in zip(align, cells)) + "</tr>")
    head = "<tr>" + "".join(f"<th{a}>{h}</th>" for a, h in zip(align, header)) + "</tr>"
    return HTMLView(f"<table>{head}{''.join(rows)}</table>")


def video_player(path: str | os.PathLike, width: int | None = None, loop: bool = True,
                 autoplay: bool = False) -> HTMLView:
    """An H.264 MP4 embedded in a ``<video>`` tag (type video/mp4) with its facts underneath.

    ``autoplay`` starts it muted as soon as it shows; give it to one player per notebook at most, so a page never
    plays several videos at once.
    """
    info = _probed(path)
    facts = html.escape(" · ".join(_facts(info)))
    return HTMLView(_player(info, f' width="{width or max(info.width, 256)}"', loop, autoplay)
                    + f"<div style='font-size:12px'>{facts}</div>")


def _probed(path: str | os.PathLike):
    from ..video import probe

    path = Path(path)
    if not path.is_file():
        raise TTLessonError(f"{path} does not exist; stitch the frames first (step 6).")
    return probe(path)


def _facts(info) -> list[str]:
    """A video's facts, each on its own, so the facts several videos share can be told once."""
    return [info.path.name, f"{info.duration:.1f} s", f"{info.frames} frames at {info.fps:g} fps",
            f"{info.width}×{info.height}", f"{info.codec}/{info.pix_fmt}", f"{info.size_bytes / 1024:.0f} KiB"]


def _player(info, size: str, loop: bool, autoplay: bool) -> str:
    """The ``<video>`` tag of a probed video, embedded (muted: a page never starts sound by itself)."""
    data = base64.b64encode(info.path.read_bytes()).decode("ascii")
    attributes = "controls muted playsinline" + (" autoplay" if autoplay else "") + (" loop" if loop else "")
    return (f'<video {attributes}{size} data-duration="{info.duration:.3f}">'
            f'<source type="video/mp4" src="data:video/mp4;base64,{data}"/>'
            "Your viewer cannot play H.264 video.</video>")


def preview(workdir: str | os.PathLike, video: str | os.PathLike, autoplay: bool = True,
            height: int = 160) -> HTMLView:
    """What the learner will make, in one row for the top of a notebook: the film ``video`` playing muted and
    looped, else the work folder's frames as a strip, else a sample film the offline tiny model made.

    ``autoplay=False`` where the notebook has an autoplaying player of its own: one per page at most.
    """
    workdir, video = Path(workdir).expanduser(), Path(video).expanduser()
    book = manifest.load(workdir)
    if video.is_file():
        info = _probed(video)
        stills = f"{book.frame_count} frames, " if book is not None else ""
        return _preview_row(f"Your film so far: {stills}{info.duration:.1f} s ({video.name})",
                            _player(info, f' height="{height}"', True, autoplay))
    frames = manifest.frame_indices(manifest.frames_dir(workdir))
    if frames:
        made = f"{len(frames)} of {book.frame_count}" if book is not None else str(len(frames))
        return _preview_row(f"Your frames so far: {made}; step 6 stitches them into your film.",
                            _frame_strip(manifest.frames_dir(workdir), frames, min(height, 120)))
    sample = _probed(cast(Path, resources.files("ttlesson.data").joinpath(SAMPLE_FILM)))  # package data: on disk
    return _preview_row("Not made yet: this is what the offline tiny model makes of the World's Fair storyboard; "
                        "yours comes from the model you choose.",
                        _player(sample, f' height="{height}"', True, autoplay))


def _preview_row(caption: str, media: str) -> HTMLView:
    return HTMLView(f"<div style='font-size:13px;margin-bottom:4px'>{html.escape(caption)}</div>{media}")


def _frame_strip(folder: Path, indices: list[int], height: int) -> str:
    """Thumbnails of the frames in one row that scrolls sideways; at most ``STRIP_MOST``, evenly spaced."""
    step = -(-len(indices) // STRIP_MOST)
    images = []
    for index in indices[::step]:
        data = _thumbnail_base64(folder / manifest.frame_filename(index), height)
        images.append(f'<img src="data:image/png;base64,{data}" height="{height}" alt="frame {index:03d}" '
                      f'title="frame {index:03d}" style="margin-right:2px"/>')
    return f"<div style='white-space:nowrap;overflow-x:auto'>{''.join(images)}</div>"


def storyboard_table(board, start: int = 0) -> HTMLView:
    """A storyboard as a table: frame number, prompt, its own seed and negative prompt (blank: the defaults)."""
    rows = []
    for index in range(start, len(board)):
        frame = board[index]
        cells = [f"{index:03d}", frame.prompt, "" if frame.seed is None else frame.seed, frame.negative_prompt or ""]
        rows.append("<tr>" + "".join(f"<td style='text-align:left'>{html.escape(str(c))}</td>" for c in cells)
                    + "</tr>")
    head = "".join(f"<th style='text-align:left'>{h}</th>" for h in ("frame", "prompt", "seed", "negative prompt"))
    return HTMLView(f"<table><tr>{head}</tr>{''.join(rows)}</table>")


def file_view(path: str | os.PathLike, max_lines: int = 40) -> HTMLView:
    """A text file as it is on disk (the storyboard's JSON, a manifest), with its name; long files are cut."""
    path = Path(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    shown = lines[:max_lines] + ([f"… {len(lines) - max_lines} more lines"] if len(lines) > max_lines else [])
    return HTMLView(f"<div style='font-size:12px'><b>{html.escape(path.name)}</b> ({len(lines)} lines)</div>"
                    + preformatted("\n".join(shown), wrap=True))


def preformatted(text: str, wrap: bool = False) -> str:
    """``text`` in a ``<pre>`` that never breaks a word: long lines scroll sideways, or with ``wrap`` break at
    spaces only (JupyterLab's own style for an output's ``<pre>`` breaks anywhere, mid-word)."""
    flow = "pre-wrap" if wrap else "pre"
    return (f"<pre style='white-space:{flow};word-break:normal;overflow-wrap:normal;overflow-x:auto'>"
            f"{html.escape(text)}</pre>")


class Chart:
    """A matplotlib figure shown as inline SVG: sharp at any zoom, and its series and legend are readable in the
    page (every plotted series has the id ``series:<label>``, every legend entry ``legend:<label>``)."""

    def __init__(self, figure):
        self.figure = figure

    def svg(self) -> str:
        import matplotlib

        buffer = io.StringIO()
        with matplotlib.rc_context({"svg.fonttype": "none"}):  # text stays text, not outlines
            self.figure.savefig(buffer, format="svg", bbox_inches="tight")
        text = buffer.getvalue()
        return text[text.index("<svg"):]

    def _repr_html_(self) -> str:
        return f'<div class="ttlesson-chart">{self.svg()}</div>'

    def save(self, path: str | os.PathLike) -> Path:
        self.figure.savefig(path, bbox_inches="tight")
        return Path(path)


def side_by_side(videos: dict[str, str | os.PathLike], width: int = 256) -> HTMLView:
    """Several videos next to each other, all looping (to compare versions of a film): each captioned with its
    label and the facts that set it apart; the facts they all share are said once, underneath."""
    infos = {label: _probed(path) for label, path in videos.items()}
    facts = {label: _facts(info) for label, info in infos.items()}
    shared = [fact for fact in _facts(next(iter(infos.values())))
              if all(fact in own for own in facts.values())] if len(infos) > 1 else []
    cells = []
    for label, info in infos.items():
        own = _unbroken([fact for fact in facts[label] if fact not in shared])
        player = _player(info, f' width="{width}"', loop=True, autoplay=False)
        cells.append(f'<figure style="margin:0;width:{width}px">{player}'
                     f'<figcaption style="font-size:12px"><b>{html.escape(label)}</b>'
                     f"{'<br>' + own if own else ''}</figcaption></figure>")
    common = (f"<div style='font-size:12px;margin-top:4px'>All {len(infos)}: {_unbroken(shared)}</div>"
              if shared else "")
    return HTMLView('<div style="display:flex;flex-wrap:wrap;gap:12px">' + "".join(cells) + "</div>" + common)


def _unbroken(facts: list[str]) -> str:
    """Facts joined by " · ", a line breaking only between them ("21 KiB" never becomes "21" and "KiB")."""
    return " · ".join(f"<span style='white-space:nowrap'>{html.escape(fact)}</span>" for fact in facts)


def walk_strip(out_dir: str | os.PathLike, pair: int = 0, width: int = 112) -> HTMLView:
    """One transition of a keyframe walk in a row: keyframe ``pair``, its in-betweens with their weights, and
    the next keyframe."""
    out_dir = Path(out_dir)
    book = _manifest_or_fail(out_dir)
    keyframes = book.keyframes
    if pair < 0 or pair + 1 >= len(keyframes):
        raise TTLessonError(f"{out_dir} has {len(keyframes)} keyframes, so transition {pair} does not exist; give "
                            f"pair from 0 to {max(0, len(keyframes) - 2)}.")
    cells = []
    for index in range(keyframes[pair], keyframes[pair + 1] + 1):
        record = book.frames[index]
        label = f"keyframe {record.keyframe}" if record.is_keyframe else f"weight {record.weight:.2f}"
        cells.append(f'<figure style="margin:2px;width:{width}px">'
                     f'<img src="data:image/png;base64,{_thumbnail_base64(out_dir / record.file, width)}" '
                     f'width="{width}" alt="frame {index:03d}"/><figcaption style="font-size:11px">'
                     f"<b>{index:03d}</b> · {label}</figcaption></figure>")
    return HTMLView('<div style="display:flex;flex-wrap:wrap">' + "".join(cells) + "</div>")


def seconds_per_frame_chart(out_dir: str | os.PathLike) -> Chart:
    """Bar chart of each frame's seconds from the manifest: warm-up frames (a device's first of a run) apart from
    the rest, and the steady-state mean as a line."""
    import matplotlib.pyplot as plt

    book = _manifest_or_fail(Path(out_dir))
    records = [record for _, record in sorted(book.frames.items())]
    steady = [r for r in records if not r.warmup] or records
    mean = sum(r.seconds for r in steady) / len(steady)
    figure, axes = plt.subplots(figsize=(8, 3))
    groups = [("warm-up (first frame of a run)", "tab:orange", [r for r in records if r.warmup]),
              ("later frames", "tab:blue", [r for r in records if not r.warmup])]
    for label, color, group in groups:
        if group:  # a legend entry only for a series that is drawn
            bars = axes.bar([r.index for r in group], [r.seconds for r in group], color=color, label=label)
            _tag(bars.patches, label)
    line = axes.axhline(mean, color="tab:gray", linestyle="--", label=f"steady state: {mean:.2f} s/frame")
    _tag([line], str(line.get_label()))
    axes.set_xlabel("frame")
    axes.set_ylabel("seconds")
    first = records[0]
    axes.set_title(f"Seconds per frame · {first.model}, {first.width}×{first.height}, {first.steps} steps, "
                   f"on {records[-1].device}")
    if len(records) <= 30:
        axes.set_xticks([r.index for r in records])
    _legend(axes, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)  # beside the bars, never on them
    figure.tight_layout()
    plt.close(figure)
    return Chart(figure)


def scaling_chart(measured, references: list[speeds.ReferenceSpeed] | None = None) -> Chart | InstructorDemo:
    """Frames per second against number of devices: this machine's measurements and the published numbers.

    ``measured``: a ``bench.this_machine.Scaling``. The references are SD 1.4 at 512×512 and 50 steps; measurements
    of other work (another model, size or step count) go on their own axes, never on the same scale.
    """
    import matplotlib.pyplot as plt

    from .room import InstructorDemo

    if isinstance(measured, InstructorDemo):  # nothing measured here: the note says whose demo it is
        return measured
    references = REFERENCE_SPEEDS if references is None else references
    points = measured.points
    work = measured.work
    same_work = work == REFERENCE_WORK
    figure, panels = plt.subplots(1, 1 if same_work else 2, figsize=(8 if same_work else 11, 4), squeeze=False)
    here = panels[0][0]
    if points:
        label = f"measured here: {work} on {points[0].device}"
        (line,) = here.plot([p.devices for p in points], [p.frames_per_second for p in points], "o-",
                            color="tab:blue", label=label)
        _tag([line], label)
    here.set_title(f"This machine · {work}" if not same_work else f"{REFERENCE_WORK}: here and published")
    published = here if same_work else panels[0][1]
    markers = {"tt-metal": ("s", "tab:green", f"tt-metal published ({REFERENCE_WORK})"),
               "lesson": ("^", "tab:red", f"lesson text ({REFERENCE_WORK})")}
    for source, (marker, color, label) in markers.items():
        refs = [ref for ref in references if ref.source == source]
        if not refs:
            continue
        dots = published.scatter([r.devices for r in refs], [1 / r.seconds_per_image for r in refs],
                                 marker=marker, color=color, label=label)
        _tag([dots], label)
        for ref in refs:  # whose figure each is: the N150 has a published point and a lesson point at 1 device
            text = f"{ref.board} · {source} {ref.seconds_per_image:g} s"
            published.annotate(text, (ref.devices, 1 / ref.seconds_per_image), fontsize=8, color=color,
                               xytext=(4, 4), textcoords="offset points")
    if not same_work:
        published.set_title(f"{REFERENCE_WORK} · published, not measured here")
    for axes in panels[0]:
        counts = sorted({int(x) for line in axes.get_lines() for x in line.get_xdata()}
                        | {int(ref.devices) for ref in references if axes is published}) or [1]
        axes.set_xscale("log", base=2)
        axes.set_xticks(counts, [str(count) for count in counts])
        axes.set_xlim(counts[0] / 1.5, counts[-1] * 1.5)
        axes.set_xlabel("devices")
        axes.set_ylabel("frames per second")
        if axes is published:
            axes.set_yscale("log")  # published and claimed speeds span a factor of ten
            ticks = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5]
            axes.set_yticks(ticks, [f"{tick:g}" for tick in ticks])
            axes.yaxis.set_minor_formatter(plt.NullFormatter())
            rates = [1 / r.seconds_per_image for r in references]
            rates += [p.frames_per_second for p in points if p.frames_per_second > 0] if same_work else []
            axes.set_ylim(min(rates) / 1.3, max(rates) * 1.3)
        else:
            axes.set_ylim(bottom=0)
        _legend(axes, loc="best" if axes is published else "lower right", fontsize=8)  # clear of the labels
    figure.tight_layout()
    plt.close(figure)
    return Chart(figure)



def _tag(artists, label: str) -> None:
    """Give plotted artists the id ``series:<label>`` (numbered when several), so the page can find them."""
    for number, artist in enumerate(artists):
        artist.set_gid(f"series:{label}" if len(artists) == 1 else f"series:{label}:{number}")


def _legend(axes, **options):
    """The axes' legend, each entry's handle given the id ``legend:<label>``."""
    legend = axes.legend(**options)
    for handle, text in zip(legend.legend_handles, legend.get_texts()):
        handle.set_gid(f"legend:{text.get_text()}")
    return legend


def _shortened(text: str, most: int) -> str:
    """``text`` cut to at most ``most`` characters at a space, ending in "…" when it was cut."""
    if len(text) <= most:
        return text
    cut = text[:most - 1]
    return (cut.rsplit(" ", 1)[0] if " " in cut else cut).rstrip(" ,;:") + "…"


def _manifest_or_fail(out_dir: Path) -> manifest.Manifest:
    book = manifest.load(out_dir)
    if book is None or not book.frames:
        raise TTLessonError(f"{out_dir} has no rendered frames yet; render the storyboard first (step 4).")
    return book


def _thumbnail_base64(path: Path, width: int) -> str:
    from PIL import Image

    with Image.open(path) as image:
        image.thumbnail((width, width))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")
