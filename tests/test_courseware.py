"""The notebook-side pieces, on real ipywidgets and the real pipeline: settings, progress widgets, the
gallery and player, the interactive studio, and the lesson helpers."""

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from ttlesson import manifest, notebook, progress, storyboard
from ttlesson.errors import TTLessonError
from ttlesson.notebook import display, lesson, settings
from ttlesson.notebook import widgets as interactive
from ttlesson.notebook.widgets import NotebookProgress
from ttlesson.render import render


def test_settings_defaults_and_sources(monkeypatch):
    for name in ("MODEL", "BACKEND", "WORKDIR", "STEPS", "SIZE", "SERVER", "ROOM"):
        monkeypatch.delenv(f"TTLESSON_{name}", raising=False)
    cfg = settings.current()
    assert (cfg.model.value, cfg.backend.value, cfg.steps.value, cfg.size.value) == ("sd14", "auto", None, None)
    assert str(cfg.workdir_path).endswith("tt-scratchpad/worldsfair-video")
    assert cfg.model.source == "default"
    monkeypatch.setenv("TTLESSON_MODEL", "tiny")
    monkeypatch.setenv("TTLESSON_STEPS", "3")
    cfg = settings.current()
    assert cfg.render_kwargs == {"model": "tiny", "backend": "auto", "steps": 3, "size": None, "server": None}
    assert cfg.model.source == "environment (TTLESSON_MODEL)"
    assert "tiny" in str(cfg) and "environment (TTLESSON_STEPS)" in cfg._repr_html_()


def test_bad_steps_setting_names_the_variable(monkeypatch):
    monkeypatch.setenv("TTLESSON_STEPS", "fifty")
    with pytest.raises(TTLessonError, match="TTLESSON_STEPS='fifty' is not a whole number"):
        settings.current()


def test_notebook_progress_follows_a_real_render(tmp_path, tiny_backend):
    bar = NotebookProgress()
    board = storyboard.loads('["one", "two", "three"]')
    render(board, tmp_path, model="tiny", backend=tiny_backend, steps=3, on_event=bar)
    assert (bar.frames_bar.value, bar.frames_bar.max, bar.frames_bar.bar_style) == (3, 3, "success")
    assert bar.steps_bar.value == bar.steps_bar.max > 0
    assert bar.notice.value == "<b>Frames are being made on the CPU, not Tenstorrent hardware.</b>"
    assert bar.status.value.startswith("done: 3 made on cpu, 0 kept")
    assert sorted(bar.thumbnails) == [0, 1, 2]
    assert bar.gallery.children == tuple(bar.thumbnails[i] for i in range(3))
    assert bar.gallery.children[0].value[:8] == b"\x89PNG\r\n\x1a\n"

    again = NotebookProgress()
    render(board, tmp_path, model="tiny", backend="torch", steps=3, on_event=again)
    assert again.frames_bar.value == again.frames_bar.max and len(again.gallery.children) == 3
    assert again.status.value.startswith("done: 0 made, 3 kept")


def test_terminal_progress_in_a_log(tmp_path, tiny_backend, capsys):
    import sys

    render(storyboard.loads('["one", "two"]'), tmp_path, model="tiny", backend=tiny_backend, steps=2,
           on_event=progress.TqdmProgress(file=sys.stdout))
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("2 frames: 0 already made, 2 to make with tiny (2 steps, 128×128) on cpu")
    assert out[1] == "Frames are being made on the CPU, not Tenstorrent hardware."
    assert out[2].startswith("frame 000 made in") and out[3].startswith("frame 001 made in")


def test_outside_a_notebook_the_terminal_display_is_chosen():
    assert not notebook.in_notebook()
    assert isinstance(notebook.for_environment(), progress.TqdmProgress)


def test_gallery_table_and_chart_from_a_render(rendered):
    result, _ = rendered
    html = display.gallery(result.out_dir).html
    assert html.count("<figure") == 10 and "data:image/png;base64," in html and "seed 9" in html
    table = display.manifest_table(result.out_dir).html
    assert table.count("<tr>") == 11 and "(warm-up)" in table
    chart = display.seconds_per_frame_chart(result.out_dir)
    axes = chart.figure.axes[0]
    assert axes.get_xlabel() == "frame" and len(axes.patches) == 10
    assert "tiny, 128×128, 4 steps" in axes.get_title()


def series_and_legend(chart) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """Colours of every plotted series and of every legend entry, by label, read from the chart's SVG."""
    from collections import defaultdict

    svg = chart.svg()
    found = {"series": defaultdict(set), "legend": defaultdict(set)}
    for kind, label, body in re.findall(r'<g id="(series|legend):([^"]*)">(.*?)</g>', svg, flags=re.S):
        label = re.sub(r":\d+$", "", label) if kind == "series" else label
        colours = set(re.findall(r"(?:fill|stroke): (#[0-9a-f]{6})", body))
        found[kind][label] |= colours
    return dict(found["series"]), dict(found["legend"])


def test_seconds_per_frame_legend_matches_its_series(rendered, tmp_path):
    series, legend = series_and_legend(display.seconds_per_frame_chart(rendered[0].out_dir))
    assert set(series) == set(legend) and len(series) == 3  # warm-up bars, later frames, the steady-state line
    for label, colours in legend.items():
        assert colours & series[label], (label, colours, series[label])


def test_seconds_per_frame_legend_covers_no_bar(rendered):
    chart = display.seconds_per_frame_chart(rendered[0].out_dir)
    chart.figure.canvas.draw()
    axes = chart.figure.axes[0]
    legend, plot = axes.get_legend().get_window_extent(), axes.get_window_extent()
    assert legend.x0 > plot.x1  # beside the axes, where the bars are not
    assert [int(tick) for tick in axes.get_xticks()] == list(range(10))  # every frame numbered


def test_seconds_per_frame_chart_without_warm_up_frames(rendered, tmp_path):
    import shutil

    from ttlesson import manifest

    copy = shutil.copytree(rendered[0].out_dir, tmp_path / "copy")
    book = manifest.load(copy)
    book.frames = {i: replace(record, warmup=False) for i, record in book.frames.items()}
    book.save(copy)
    series, legend = series_and_legend(display.seconds_per_frame_chart(copy))
    assert set(series) == set(legend) and not any("warm-up" in label for label in legend)


def test_player_embeds_h264_with_the_right_mimetype(rendered, tmp_path):
    from ttlesson.video import stitch

    info = stitch(rendered[0].out_dir, tmp_path / "v.mp4")
    html = display.video_player(info.path).html
    assert '<source type="video/mp4" src="data:video/mp4;base64,' in html
    assert " loop" in html and "playsinline" in html and "5.0 s · 10 frames at 2 fps" in html
    assert " autoplay" not in html and " autoplay" in display.video_player(info.path, autoplay=True).html
    assert display.video_player(info.path, loop=False).html.count(" loop") == 0
    assert 'data-duration="5.000"' in html


def test_stitch_returns_the_command_it_ran(rendered, tmp_path):
    import shlex

    from ttlesson.video import stitch

    info = stitch(rendered[0].out_dir, tmp_path / "v.mp4", fps=4)
    assert info.command[1:3] == ("-framerate", "4") and "libx264" in info.command
    assert shlex.split(info.command_line) == list(info.command)
    partial = Path(info.command[-2]).name  # written aside (one name per process), renamed into place when whole
    assert partial.startswith(".v.mp4.") and partial.endswith(".partial.mp4")


def test_side_by_side_captions_say_which_version_and_the_shared_facts_once(rendered, tmp_path):
    from ttlesson.video import stitch

    sharp = stitch(rendered[0].out_dir, tmp_path / "sharp" / "film.mp4")
    small = stitch(rendered[0].out_dir, tmp_path / "small" / "film.mp4", crf=40)
    html = display.side_by_side({"near-lossless": sharp.path, "smallest": small.path}).html
    assert html.count("<video") == 2 and html.count(" autoplay") == 0 and html.count("film.mp4") == 1
    assert html.count("<figcaption") == 2 and "<b>near-lossless</b><br>" in html and "<b>smallest</b><br>" in html
    text = re.sub(r"<[^>]+>", "", html)
    assert "All 2: film.mp4 · 5.0 s · 10 frames at 2 fps · 128×128 · h264/yuv420p" in text
    assert f"{sharp.size_bytes / 1024:.0f} KiB" in text and f"{small.size_bytes / 1024:.0f} KiB" in text
    assert "<span style='white-space:nowrap'>10 frames at 2 fps</span>" in html  # a fact is never split


def test_preview_shows_the_film_else_the_frames_else_the_sample(rendered, tmp_path):
    from html import unescape

    from ttlesson.video import stitch

    out = rendered[0].out_dir
    sample = unescape(display.preview(tmp_path, tmp_path / "film.mp4", autoplay=False).html)
    assert "Not made yet: this is what the offline tiny model makes of the World's Fair storyboard" in sample
    assert sample.count("<video") == 1 and " autoplay" not in sample and " muted" in sample
    assert 'data-duration="5.000"' in sample and 'height="160"' in sample
    frames = display.preview(out, tmp_path / "film.mp4").html
    assert "Your frames so far: 10 of 10;" in frames and frames.count("<img") == 10 and "<video" not in frames
    film = stitch(out, tmp_path / "film.mp4")
    shown = display.preview(out, film.path).html
    assert "Your film so far: 10 frames, 5.0 s (film.mp4)" in shown
    assert shown.count("<video") == 1 and all(word in shown for word in (" autoplay", " muted", " loop"))


def test_preview_of_a_long_render_samples_its_frames(tmp_path):
    from PIL import Image

    (tmp_path / "frames").mkdir()
    for index in range(30):
        Image.new("RGB", (16, 16), (index * 8, 0, 0)).save(tmp_path / "frames" / f"frame_{index:03d}.png")
    strip = display.preview(tmp_path, tmp_path / "film.mp4").html
    assert "Your frames so far: 30;" in strip and strip.count("<img") == 10 and 'alt="frame 027"' in strip


def test_the_shipped_sample_is_small_and_plays():
    from importlib import resources

    from ttlesson.video import probe

    sample = probe(resources.files("ttlesson.data").joinpath(display.SAMPLE_FILM))
    assert sample.facts == "10 frames at 2 fps = 5.0 s, h264/yuv420p, 128×128" and sample.size_bytes < 64 * 1024


def test_text_and_commands_never_break_inside_a_word(rendered, tmp_path):
    from ttlesson.notebook import by_hand
    from ttlesson.video import stitch

    board = tmp_path / "prompts.json"
    board.write_text('[{"prompt": "' + "a very long prompt " * 20 + '"}]')
    view = display.file_view(board).html
    assert "white-space:pre-wrap;word-break:normal;overflow-wrap:normal" in view
    frames = tmp_path / "frames"
    frames.symlink_to(rendered[0].out_dir / "frames")
    info = stitch(frames, tmp_path / "film.mp4")
    guide = by_hand.step6(info, tmp_path)
    assert guide.ran.startswith(f"cd {tmp_path}\n") and "-i frames/frame_%03d.png" in guide.ran
    assert guide.ran.endswith(" film.mp4 -y") and ".partial" not in guide.ran
    assert all(len(line) <= 90 or " " not in line.strip() for line in guide.ran.splitlines()[2:])
    page = guide._repr_html_()
    assert page.count("<pre style='white-space:pre;word-break:normal;overflow-wrap:normal;overflow-x:auto'>") == 2


def test_display_without_frames_is_one_sentence(tmp_path):
    with pytest.raises(TTLessonError, match="no rendered frames yet"):
        display.gallery(tmp_path)
    with pytest.raises(TTLessonError, match="stitch the frames first"):
        display.video_player(tmp_path / "none.mp4")


def _scaling(model, size, steps):
    from ttlesson.bench.this_machine import Scaling, ScalingPoint

    points = [ScalingPoint(1, 0.5, 9.0, "cpu", "measured here (cpu)"), ScalingPoint(2, 0.9, 7.0, "cpu", "x")]
    return Scaling(points, True, model=model, width=size, height=size, steps=steps)


def test_scaling_chart_keeps_unlike_work_apart():
    chart = display.scaling_chart(_scaling("tiny", 128, 10))
    here, published = chart.figure.axes
    assert "tiny model, 128×128, 10 steps" in here.get_title() and not here.texts
    assert "SD 1.4, 512×512, 50 steps" in published.get_title()
    assert {t.get_text() for t in published.texts} == {"N150 · tt-metal 4.83 s", "P150 · tt-metal 3.15 s",
                                                        "N150 · lesson 35 s", "N300 · lesson 20 s", "T3K · lesson 7 s"}
    labels = [text.get_text() for text in published.get_legend().get_texts()]
    assert labels == ["tt-metal published (SD 1.4, 512×512, 50 steps)", "lesson text (SD 1.4, 512×512, 50 steps)"]
    series, legend = series_and_legend(chart)
    assert set(series) == set(legend) and len(legend) == 3
    assert all(legend[label] & series[label] for label in legend)


def test_scaling_chart_puts_the_same_work_on_one_axes():
    chart = display.scaling_chart(_scaling("sd14", 512, 50))
    (axes,) = chart.figure.axes
    labels = [text.get_text() for text in axes.get_legend().get_texts()]
    assert labels[0] == "measured here: SD 1.4, 512×512, 50 steps on cpu" and len(labels) == 3


@pytest.fixture
def studio(tmp_path, tiny_folder):
    return interactive.PromptStudio(tmp_path / "prompts.json", model="tiny", steps=2)


def test_studio_generates_and_keeps_the_model_loaded(studio):
    studio.prompt.value = "a lighthouse at dusk"
    assert studio.generate() is True
    assert studio.image.value[:8] == b"\x89PNG\r\n\x1a\n" and "2 steps" in studio.status.value
    loaded = interactive.loaded_backend("tiny", "auto", None)
    studio.seed.value = 3
    assert studio.generate() is True
    assert interactive.loaded_backend("tiny", "auto", None) is loaded


def test_studio_adds_prompt_and_seed_to_the_storyboard(studio):
    assert studio.add_to_storyboard() is False and "Generate a frame first" in studio.status.value
    studio.prompt.value = "a harbour at dawn"
    studio.seed.value = 11
    studio.generate()
    assert studio.add_to_storyboard() is True
    assert json.loads(studio.storyboard_path.read_text()) == [{"prompt": "a harbour at dawn", "seed": 11}]
    assert "added as frame 0" in studio.status.value


def test_studio_counts_the_steps_asked_for_and_disables_add_while_generating(studio, monkeypatch):
    studio.prompt.value = "a pier at noon"
    studio.steps.value = 3
    seen = []

    def watch(text):
        seen.append((text, studio.add_button.disabled, studio.generate_button.disabled))

    monkeypatch.setattr(studio, "_say", watch)
    assert studio.generate() is True
    steps = [text for text, _, _ in seen if text.startswith("step ")]
    assert steps and all(text.split()[1].endswith("/3") for text in steps)  # PNDM's extra pass is not "4/3"
    assert all(add and generate for text, add, generate in seen[:-1])  # both wait while the frame is made
    assert not studio.add_button.disabled and not studio.generate_button.disabled
    assert "(the model was already loaded)" in seen[-1][0] or "after loading the model" in seen[-1][0]


def test_studio_shows_errors_and_keeps_working(studio, tmp_path):
    assert studio.generate() is False and "Type a prompt first" in studio.status.value
    studio.storyboard_path.write_text("{broken")
    studio.prompt.value = "a gull"
    assert studio.generate() is True
    assert studio.add_to_storyboard() is False and "invalid JSON" in studio.status.value
    assert not studio.generate_button.disabled


def test_lesson_helpers_make_what_is_missing(monkeypatch, tmp_path, tiny_folder, capsys):
    monkeypatch.setenv("TTLESSON_MODEL", "tiny")
    monkeypatch.setenv("TTLESSON_STEPS", "2")
    monkeypatch.setenv("TTLESSON_WORKDIR", str(tmp_path))
    cfg = lesson.start()
    assert f"work folder {tmp_path};" in capsys.readouterr().out  # TTLESSON_WORKDIR is in use
    assert manifest.load(tmp_path) is None
    made = lesson.ensure_frames(cfg)
    out = capsys.readouterr().out
    assert "starting from the lesson's World's Fair storyboard" in out and "making them now" in out
    assert made.made == list(range(10)) and manifest.load(tmp_path).complete
    assert lesson.ensure_frames(cfg) is None
    assert capsys.readouterr().out.startswith(f"All 10 frames of step 4 are in {tmp_path}.")


def test_txt_storyboard_keeps_its_form_and_refuses_seeds(tmp_path):
    board = storyboard.loads("one\ntwo", fmt="txt")
    path = board.save(tmp_path / "b.txt")
    assert path.read_text() == "one\ntwo\n"
    board.append("three", seed=4)
    with pytest.raises(TTLessonError, match="save it as .json"):
        board.save(path)


def test_a_scaling_measurement_is_kept_for_the_same_settings_on_this_machine(monkeypatch, tmp_path, capsys):
    from ttlesson.bench import this_machine as bench

    monkeypatch.setenv("TTLESSON_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TTLESSON_MODEL", "tiny")
    monkeypatch.setenv("TTLESSON_WORKDIR", str(tmp_path / "work"))
    measured = replace(_scaling("tiny", 128, 10), measured_at="2026-12-07 09:30")
    calls = []
    monkeypatch.setattr(bench, "scaling", lambda *args, **kwargs: calls.append(kwargs) or measured)
    cfg = settings.current()
    assert lesson.measure_scaling(cfg) == measured and len(calls) == 1  # measured, then kept
    assert lesson.measure_scaling(cfg) == measured and len(calls) == 1  # shown again, not measured
    assert "Measured on this machine at 2026-12-07 09:30" in capsys.readouterr().out
    assert lesson.measure_scaling(cfg, again=True) == measured and len(calls) == 2
    assert lesson.measure_scaling(cfg, frames=4) == measured and len(calls) == 3  # other settings: measured
    key = bench.scaling_key("tiny", [1, 2], 6, "auto", None, None)
    assert bench.saved_scaling(key) == measured and bench.saved_scaling({**key, "host": "elsewhere"}) is None
    bench._saved_scaling_path(key).write_text("{not json")
    assert bench.saved_scaling(key) is None  # a damaged file is measured again, not trusted


def test_device_counts_on_a_machine_without_accelerators():
    from ttlesson.bench import this_machine as bench

    assert bench.device_counts() == [1, 2]
