"""The notebook-side pieces, on real ipywidgets and the real pipeline: settings, progress widgets, the
gallery and player, the interactive studio, and the lesson helpers."""

import json

import pytest

from ttlesson import display, interactive, lesson, progress, settings, storyboard
from ttlesson.errors import TTLessonError
from ttlesson.render import render


def test_settings_defaults_and_sources(monkeypatch):
    for name in ("MODEL", "BACKEND", "WORKDIR", "STEPS", "SIZE"):
        monkeypatch.delenv(f"TTLESSON_{name}", raising=False)
    cfg = settings.current()
    assert (cfg.model.value, cfg.backend.value, cfg.steps.value, cfg.size.value) == ("sd14", "auto", None, None)
    assert str(cfg.workdir_path).endswith("tt-scratchpad/worldsfair-video")
    assert cfg.model.source == "default"
    monkeypatch.setenv("TTLESSON_MODEL", "tiny")
    monkeypatch.setenv("TTLESSON_STEPS", "3")
    cfg = settings.current()
    assert cfg.render_kwargs == {"model": "tiny", "backend": "auto", "steps": 3, "size": None}
    assert cfg.model.source == "environment (TTLESSON_MODEL)"
    assert "tiny" in str(cfg) and "environment (TTLESSON_STEPS)" in cfg._repr_html_()


def test_bad_steps_setting_names_the_variable(monkeypatch):
    monkeypatch.setenv("TTLESSON_STEPS", "fifty")
    with pytest.raises(TTLessonError, match="TTLESSON_STEPS='fifty' is not a whole number"):
        settings.current()


def test_notebook_progress_follows_a_real_render(tmp_path, tiny_backend):
    bar = progress.NotebookProgress()
    board = storyboard.loads('["one", "two", "three"]')
    render(board, tmp_path, model="tiny", backend=tiny_backend, steps=3, on_event=bar)
    assert (bar.frames_bar.value, bar.frames_bar.max, bar.frames_bar.bar_style) == (3, 3, "success")
    assert bar.steps_bar.value == bar.steps_bar.max > 0
    assert bar.notice.value == "<b>Frames are being made on the CPU, not Tenstorrent hardware.</b>"
    assert bar.status.value.startswith("done: 3 made on cpu, 0 kept")
    assert sorted(bar.thumbnails) == [0, 1, 2]
    assert bar.gallery.children == tuple(bar.thumbnails[i] for i in range(3))
    assert bar.gallery.children[0].value[:8] == b"\x89PNG\r\n\x1a\n"

    again = progress.NotebookProgress()
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
    assert not progress.in_notebook()
    assert isinstance(progress.for_environment(), progress.TqdmProgress)


def test_gallery_table_and_chart_from_a_render(rendered):
    result, _ = rendered
    html = display.gallery(result.out_dir).html
    assert html.count("<figure") == 10 and "data:image/png;base64," in html and "seed 9" in html
    table = display.manifest_table(result.out_dir).html
    assert table.count("<tr>") == 11 and "(warm-up)" in table
    figure = display.seconds_per_frame_chart(result.out_dir)
    assert figure.axes[0].get_xlabel() == "frame" and len(figure.axes[0].patches) == 10


def test_player_embeds_h264_with_the_right_mimetype(rendered, tmp_path):
    from ttlesson.video import stitch

    info = stitch(rendered[0].out_dir, tmp_path / "v.mp4")
    html = display.video_player(info.path).html
    assert '<source type="video/mp4" src="data:video/mp4;base64,' in html
    assert " loop" in html and "playsinline" in html and "5.0 s · 10 frames at 2 fps" in html
    assert display.video_player(info.path, loop=False).html.count(" loop") == 0


def test_display_without_frames_is_one_sentence(tmp_path):
    with pytest.raises(TTLessonError, match="no rendered frames yet"):
        display.gallery(tmp_path)
    with pytest.raises(TTLessonError, match="stitch the frames first"):
        display.video_player(tmp_path / "none.mp4")


def test_scaling_chart_labels_each_source():
    from ttlesson.bench import ScalingPoint

    figure = display.scaling_chart([ScalingPoint(1, 0.5, 9.0, "cpu", "this machine (cpu)"),
                                    ScalingPoint(2, 0.9, 7.0, "cpu", "this machine (cpu)")])
    texts = [t.get_text() for t in figure.axes[0].texts]
    assert "N150, tt-metal published" in texts and "T3K, lesson text" in texts
    assert figure.axes[0].get_legend().get_texts()[0].get_text() == "this machine (cpu)"


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
    assert "environment (TTLESSON_WORKDIR)" in capsys.readouterr().out
    assert lesson.frame_facts(cfg) == "no frames yet"
    info = lesson.ensure_video(cfg)
    out = capsys.readouterr().out
    assert "starting from the lesson's World's Fair storyboard" in out and "making them now" in out
    assert info.path == tmp_path / lesson.VIDEO_FILE and info.frames == 10
    assert lesson.frame_facts(cfg) == "10 of 10 frames (all made)"
    assert lesson.ensure_frames(cfg) is None and lesson.ensure_video(cfg) == info


def test_txt_storyboard_keeps_its_form_and_refuses_seeds(tmp_path):
    board = storyboard.loads("one\ntwo", fmt="txt")
    path = board.save(tmp_path / "b.txt")
    assert path.read_text() == "one\ntwo\n"
    board.append("three", seed=4)
    with pytest.raises(TTLessonError, match="save it as .json"):
        board.save(path)


def test_scaling_measures_each_device_count_on_the_same_frames(tiny_folder):
    from ttlesson import bench

    result = bench.scaling("tiny", counts=[1, 2], frames=4, steps=2)
    assert [p.devices for p in result.points] == [1, 2]
    assert all(p.frames_per_second > 0 and "cpu" in p.device for p in result.points)
    assert result.identical  # two workers make the very frames one process makes
    assert "Frames identical across device counts: True" in result._repr_html_()


def test_device_counts_on_a_machine_without_accelerators():
    from ttlesson import bench

    assert bench.device_counts() == [1, 2]
