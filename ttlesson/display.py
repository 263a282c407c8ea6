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

from . import manifest
from .errors import TTLessonError

# Published and claimed speeds, each with where it comes from (seconds per 512×512 SD 1.4 image, 50 steps).
REFERENCE_SPEEDS = [
    {"label": "N150, tt-metal published", "devices": 1, "seconds_per_image": 4.83, "source": "tt-metal"},
    {"label": "P150, tt-metal published", "devices": 1, "seconds_per_image": 3.15, "source": "tt-metal"},
    {"label": "N150, lesson text", "devices": 1, "seconds_per_image": 35.0, "source": "lesson"},
    {"label": "N300, lesson text", "devices": 2, "seconds_per_image": 20.0, "source": "lesson"},
    {"label": "T3K, lesson text", "devices": 8, "seconds_per_image": 7.0, "source": "lesson"},
]


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


def video_player(path: str | os.PathLike, width: int | None = None, loop: bool = True) -> HTMLView:
    """An H.264 MP4 embedded in a ``<video>`` tag (type video/mp4), looping, with its facts underneath."""
    from .video import probe

    path = Path(path)
    if not path.is_file():
        raise TTLessonError(f"{path} does not exist; stitch the frames first (step 6).")
    info = probe(path)
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    size = f' width="{width or max(info.width, 256)}"'
    attributes = "controls autoplay muted playsinline" + (" loop" if loop else "")
    facts = (f"{html.escape(path.name)} · {info.duration:.1f} s · {info.frames} frames at {info.fps:g} fps · "
             f"{info.width}×{info.height} · {info.codec}/{info.pix_fmt} · {info.size_bytes / 1024:.0f} KiB")
    return HTMLView(f'<video {attributes}{size}><source type="video/mp4" src="data:video/mp4;base64,{data}"/>'
                    f"Your viewer cannot play H.264 video.</video><div style='font-size:12px'>{facts}</div>")


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


def seconds_per_frame_chart(out_dir: str | os.PathLike):
    """Bar chart of each frame's seconds from the manifest; warm-up frames (first of a run) stand out."""
    import matplotlib.pyplot as plt

    book = _manifest_or_fail(Path(out_dir))
    records = [record for _, record in sorted(book.frames.items())]
    steady = [r.seconds for r in records if not r.warmup] or [r.seconds for r in records]
    mean = sum(steady) / len(steady)
    figure, axes = plt.subplots(figsize=(8, 3))
    axes.bar([r.index for r in records], [r.seconds for r in records],
             color=["tab:orange" if r.warmup else "tab:blue" for r in records])
    axes.axhline(mean, color="tab:gray", linestyle="--", label=f"steady state: {mean:.2f} s/frame")
    axes.bar([], [], color="tab:orange", label="warm-up (first frame of a run)")
    axes.set_xlabel("frame")
    axes.set_ylabel("seconds")
    axes.set_title(f"Seconds per frame · {records[0].model} on {records[-1].device}")
    axes.legend(loc="upper right")
    figure.tight_layout()
    plt.close(figure)
    return figure


def scaling_chart(measured, references: list[dict] | None = None):
    """Frames per second against number of devices: the user's measurements next to published numbers.

    ``measured``: the ``ScalingPoint`` list of ``ttlesson.bench.scaling`` (or a ``Scaling``).
    """
    import matplotlib.pyplot as plt

    points = getattr(measured, "points", measured)
    references = REFERENCE_SPEEDS if references is None else references
    figure, axes = plt.subplots(figsize=(8, 4))
    if points:
        axes.plot([p.devices for p in points], [p.frames_per_second for p in points], "o-", color="tab:blue",
                  label=points[0].label)
    markers = {"tt-metal": ("s", "tab:green"), "lesson": ("^", "tab:red")}
    for ref in references:
        marker, color = markers.get(ref["source"], ("x", "tab:gray"))
        axes.scatter(ref["devices"], 1 / ref["seconds_per_image"], marker=marker, color=color)
        axes.annotate(ref["label"], (ref["devices"], 1 / ref["seconds_per_image"]), fontsize=8,
                      xytext=(4, 4), textcoords="offset points")
    axes.set_xlabel("devices")
    axes.set_ylabel("frames per second")
    axes.set_yscale("log")
    axes.set_title("Frames per second by number of devices (SD 1.4 references are 512×512, 50 steps)")
    axes.legend(loc="lower right")
    figure.tight_layout()
    plt.close(figure)
    return figure


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
