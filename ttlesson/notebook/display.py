"""What a notebook shows: a frame gallery, inline video players (side by side), a keyframe walk's strip of
in-between frames, and timing charts.

Everything is embedded in the notebook's output (base64 images and video), so it shows in JupyterLab, VS Code
and a saved HTML export alike, with no file server behind it.
"""

from __future__ import annotations

import base64
import html
import io
import os
from dataclasses import dataclass
from pathlib import Path

from .. import expectations, manifest
from ..errors import TTLessonError

# Published and claimed speeds, each with where it comes from (seconds per 512×512 SD 1.4 image, 50 steps).
REFERENCE_SPEEDS = expectations.reference_speeds()
REFERENCE_WORK = expectations.SD14_WORK


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
        caption = html.escape(record.prompt if len(record.prompt) <= 90 else record.prompt[:87] + "…")
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
    rows = []
    for index, r in sorted(book.frames.items()):
        prompt = r.prompt if len(r.prompt) <= 60 else r.prompt[:57] + "…"
        cells = [f"{index:03d}", prompt, r.seed, r.steps, f"{r.width}×{r.height}", r.model, r.backend, r.device,
                 f"{r.seconds:.2f}" + (" (warm-up)" if r.warmup else "")]
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    head = "<tr>" + "".join(f"<th>{h}</th>" for h in header) + "</tr>"
    return HTMLView(f"<table>{head}{''.join(rows)}</table>")


def video_player(path: str | os.PathLike, width: int | None = None, loop: bool = True,
                 autoplay: bool = False) -> HTMLView:
    """An H.264 MP4 embedded in a ``<video>`` tag (type video/mp4) with its facts underneath.

    ``autoplay`` starts it muted as soon as it shows; give it to one player per notebook at most, so a page never
    plays several videos at once.
    """
    from ..video import probe

    path = Path(path)
    if not path.is_file():
        raise TTLessonError(f"{path} does not exist; stitch the frames first (step 6).")
    info = probe(path)
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    size = f' width="{width or max(info.width, 256)}"'
    attributes = "controls muted playsinline" + (" autoplay" if autoplay else "") + (" loop" if loop else "")
    facts = (f"{html.escape(path.name)} · {info.duration:.1f} s · {info.frames} frames at {info.fps:g} fps · "
             f"{info.width}×{info.height} · {info.codec}/{info.pix_fmt} · {info.size_bytes / 1024:.0f} KiB")
    return HTMLView(f'<video {attributes}{size} data-duration="{info.duration:.3f}">'
                    f'<source type="video/mp4" src="data:video/mp4;base64,{data}"/>'
                    f"Your viewer cannot play H.264 video.</video><div style='font-size:12px'>{facts}</div>")


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
                    f"<pre style='white-space:pre-wrap'>{html.escape(chr(10).join(shown))}</pre>")


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
    """Several videos next to each other, each under its label, all looping (to compare versions of a film)."""
    cells = [f'<div style="margin:4px"><div style="font-weight:bold;font-size:13px">{html.escape(label)}</div>'
             f"{video_player(path, width=width).html}</div>" for label, path in videos.items()]
    return HTMLView('<div style="display:flex;flex-wrap:wrap;gap:8px">' + "".join(cells) + "</div>")


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
    _tag([line], line.get_label())
    axes.set_xlabel("frame")
    axes.set_ylabel("seconds")
    first = records[0]
    axes.set_title(f"Seconds per frame · {first.model}, {first.width}×{first.height}, {first.steps} steps, "
                   f"on {records[-1].device}")
    _legend(axes, loc="upper right")
    figure.tight_layout()
    plt.close(figure)
    return Chart(figure)


def scaling_chart(measured, references: list[expectations.ReferenceSpeed] | None = None) -> Chart:
    """Frames per second against number of devices: this machine's measurements and the published numbers.

    ``measured``: a ``ttlesson.bench.Scaling``. The references are SD 1.4 at 512×512 and 50 steps; measurements
    of other work (another model, size or step count) go on their own axes, never on the same scale.
    """
    import matplotlib.pyplot as plt

    from .lesson import InstructorDemo

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
        for ref in refs:
            published.annotate(ref.label.split(",")[0], (ref.devices, 1 / ref.seconds_per_image),
                               fontsize=8, xytext=(4, 4), textcoords="offset points")
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
        _legend(axes, loc="lower right", fontsize=8)
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
