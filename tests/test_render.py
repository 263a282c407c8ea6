"""The frame loop on the real diffusers pipeline (offline tiny model)."""

import importlib
import json
from dataclasses import dataclass

import pytest
from PIL import Image

from ttlesson import manifest, storyboard
from ttlesson.backends import FrameRequest
from ttlesson.errors import PromptTooLongWarning, SettingsChangedError, TTLessonError
from ttlesson.fileio import sha256_file
from ttlesson.inputs import parse_size
from ttlesson.progress import FrameDone, FrameStarted, ModelLoaded, RenderFinished, RenderStarted, StepDone
from ttlesson.render import render


def render_tiny(board, out, backend, **kwargs):
    kwargs.setdefault("steps", 4)
    return render(board, out, model="tiny", backend=backend, **kwargs)


def shas(out):
    return {p.name: sha256_file(p) for p in sorted(manifest.frames_dir(out).glob("*.png"))}


def test_one_png_per_prompt_and_a_manifest(rendered):
    result, _ = rendered
    frames = manifest.frames_dir(result.out_dir)
    assert sorted(p.name for p in frames.iterdir()) == [f"frame_{i:03d}.png" for i in range(10)]
    for path in result.frame_paths:
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size == (128, 128)
    data = json.loads(result.manifest_path.read_text())
    assert data["frame_count"] == 10 and data["storyboard"] == "worlds-fair"
    prompts = storyboard.load("worlds-fair").prompts
    for i, entry in enumerate(data["frames"]):
        assert entry["file"] == f"frames/frame_{i:03d}.png"
        assert entry["prompt"] == prompts[i] and entry["seed"] == i and entry["negative_prompt"] is None
        assert (entry["steps"], entry["guidance"], entry["width"], entry["height"]) == (4, 2.5, 128, 128)
        assert (entry["model"], entry["backend"], entry["device"]) == ("tiny", "torch", "cpu")
        assert entry["seconds"] > 0
        assert entry["sha256"] == sha256_file(result.out_dir / entry["file"])
    assert result.made == list(range(10)) and result.kept == []


def test_progress_events_come_in_order(rendered):
    _, events = rendered
    assert isinstance(events[0], RenderStarted) and events[0].to_make == tuple(range(10))
    assert isinstance(events[1], ModelLoaded) and events[1].device == "cpu"
    assert isinstance(events[-1], RenderFinished) and events[-1].made == tuple(range(10))
    done = [e for e in events if isinstance(e, FrameDone)]
    assert [e.index for e in done] == list(range(10))
    assert [e.position for e in done] == list(range(1, 11)) and done[-1].eta_seconds == 0
    assert all(e.seconds_per_frame > 0 for e in done)
    frame0 = events[events.index(next(e for e in events if isinstance(e, FrameStarted))):
                    events.index(done[0])]
    steps = [e for e in frame0 if isinstance(e, StepDone)]
    assert [e.step for e in steps] == list(range(1, steps[-1].steps + 1)) and steps[-1].steps >= 4


def test_same_settings_give_byte_identical_frames(rendered, tmp_path, tiny_backend):
    result, _ = rendered
    again = render_tiny("worlds-fair", tmp_path, tiny_backend)
    assert shas(again.out_dir) == shas(result.out_dir)


def test_another_seed_gives_other_frames(rendered, tmp_path, tiny_backend):
    board = storyboard.Storyboard(frames=storyboard.load("worlds-fair").frames[:2])
    other = render_tiny(board, tmp_path, tiny_backend, seed=1000)
    assert set(shas(other.out_dir).values()).isdisjoint(shas(rendered[0].out_dir).values())


def test_a_frames_own_seed_wins(tmp_path, tiny_backend):
    own = render_tiny(storyboard.loads('[{"prompt": "a lighthouse", "seed": 7}]'), tmp_path / "own", tiny_backend)
    base = render_tiny(storyboard.loads('["a lighthouse"]'), tmp_path / "base", tiny_backend, seed=7)
    assert own.manifest.frames[0].seed == 7
    assert shas(own.out_dir) == shas(base.out_dir)


def test_negative_prompt_changes_the_frame(tmp_path, tiny_backend):
    plain = render_tiny(storyboard.loads('["a lighthouse"]'), tmp_path / "a", tiny_backend)
    negative = render_tiny(storyboard.loads('[{"prompt": "a lighthouse", "negative_prompt": "fog"}]'),
                           tmp_path / "b", tiny_backend)
    assert shas(plain.out_dir) != shas(negative.out_dir)


def test_rerun_keeps_every_frame_and_loads_no_model(rendered, tiny_backend):
    result, _ = rendered
    before = {p: p.stat().st_mtime_ns for p in result.frame_paths}
    events = []
    again = render("worlds-fair", result.out_dir, model="tiny", backend="torch", steps=4, on_event=events.append)
    assert again.made == [] and again.kept == list(range(10)) and again.device is None
    assert not any(isinstance(e, ModelLoaded) for e in events)
    assert {p: p.stat().st_mtime_ns for p in result.frame_paths} == before


def test_missing_frame_is_the_only_one_remade(tmp_path, tiny_backend):
    first = render_tiny("worlds-fair", tmp_path, tiny_backend)
    expected = shas(tmp_path)
    (manifest.frames_dir(tmp_path) / "frame_003.png").unlink()
    again = render_tiny("worlds-fair", tmp_path, tiny_backend)
    assert again.made == [3] and len(again.kept) == 9
    assert shas(tmp_path) == expected == shas(first.out_dir)


def test_changed_settings_stop_without_overwrite_and_touch_nothing(tmp_path, tiny_backend):
    board = storyboard.loads('["one", "two", "three"]')
    render_tiny(board, tmp_path, tiny_backend)
    before, manifest_before = shas(tmp_path), manifest.manifest_path(tmp_path).read_bytes()
    with pytest.raises(SettingsChangedError) as err:
        render_tiny(board, tmp_path, tiny_backend, steps=5)
    assert "frame_000.png was made with other settings (steps 4 → 5) (and 2 more frames)" in str(err.value)
    assert "--overwrite" in str(err.value)
    assert shas(tmp_path) == before and manifest.manifest_path(tmp_path).read_bytes() == manifest_before

    remade = render_tiny(board, tmp_path, tiny_backend, steps=5, overwrite=True)
    assert remade.made == [0, 1, 2] and all(r.steps == 5 for r in remade.manifest.frames.values())


def test_a_field_added_to_the_request_is_recorded_compared_and_made(tmp_path, tiny_backend, monkeypatch):
    # what a new per-frame setting needs besides FrameRequest (tests/test_manifest.py names each): a field of the
    # record and its check when read; render builds, stores, reads back and compares it with nothing else changed
    render_module = importlib.import_module("ttlesson.render")  # the module: ttlesson.render is the function

    @dataclass(frozen=True)
    class Record(manifest.FrameRecord):
        grain: float = 0.0

    def request_with_grain(value: float):
        @dataclass(frozen=True)
        class Request(FrameRequest):
            grain: float = value

        return Request

    monkeypatch.setattr(manifest, "FrameRecord", Record)
    monkeypatch.setattr(render_module, "FrameRecord", Record)
    monkeypatch.setitem(manifest.RECORD_SCHEMA, "grain", (lambda value: isinstance(value, float), "a number", False))
    made_from = []
    generate = tiny_backend.generate
    monkeypatch.setattr(tiny_backend, "generate", lambda request, on_step=None: made_from.append(request) or
                        generate(request, on_step=on_step))
    board = storyboard.loads('["one", "two"]')
    monkeypatch.setattr(render_module, "FrameRequest", request_with_grain(0.0))
    render_tiny(board, tmp_path, tiny_backend)
    assert [entry["grain"] for entry in json.loads(manifest.manifest_path(tmp_path).read_text())["frames"]] == [0, 0]

    monkeypatch.setattr(render_module, "FrameRequest", request_with_grain(0.5))
    with pytest.raises(SettingsChangedError, match=r"frame_000.png was made with other settings \(grain 0.0 → 0.5\)"):
        render_tiny(board, tmp_path, tiny_backend)
    made_from.clear()
    remade = render_tiny(board, tmp_path, tiny_backend, overwrite=True)
    assert remade.made == [0, 1] and [request.grain for request in made_from] == [0.5, 0.5]
    assert render_tiny(board, tmp_path, tiny_backend).kept == [0, 1]


def test_only_changed_prompts_are_remade_with_overwrite(tmp_path, tiny_backend):
    render_tiny(storyboard.loads('["one", "two", "three"]'), tmp_path, tiny_backend)
    result = render_tiny(storyboard.loads('["one", "TWO", "three"]'), tmp_path, tiny_backend, overwrite=True)
    assert result.made == [1] and result.kept == [0, 2]


def test_hand_edited_or_foreign_frames_are_not_replaced(tmp_path, tiny_backend):
    board = storyboard.loads('["one", "two"]')
    render_tiny(board, tmp_path, tiny_backend)
    frame = manifest.frames_dir(tmp_path) / "frame_001.png"
    Image.new("RGB", (128, 128), "orange").save(frame)
    with pytest.raises(SettingsChangedError, match="frame_001.png was changed after ttlesson made it"):
        render_tiny(board, tmp_path, tiny_backend)

    foreign = tmp_path / "foreign"
    manifest.frames_dir(foreign).mkdir(parents=True)
    Image.new("RGB", (128, 128), "teal").save(manifest.frames_dir(foreign) / "frame_000.png")
    with pytest.raises(SettingsChangedError, match="frame_000.png is not in the manifest"):
        render_tiny(board, foreign, tiny_backend)


def test_shorter_storyboard_needs_overwrite_to_drop_frames(tmp_path, tiny_backend):
    render_tiny(storyboard.loads('["one", "two", "three"]'), tmp_path, tiny_backend)
    with pytest.raises(SettingsChangedError, match="1 frames beyond the storyboard's end"):
        render_tiny(storyboard.loads('["one", "two"]'), tmp_path, tiny_backend)
    result = render_tiny(storyboard.loads('["one", "two"]'), tmp_path, tiny_backend, overwrite=True)
    assert result.kept == [0, 1] and sorted(shas(tmp_path)) == ["frame_000.png", "frame_001.png"]
    assert result.manifest.complete and result.manifest.frame_count == 2


def test_interrupted_run_keeps_finished_frames_and_resumes(tmp_path, tiny_backend):
    def interrupt_after_three(event):
        if isinstance(event, FrameDone) and event.position == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        render_tiny("worlds-fair", tmp_path, tiny_backend, on_event=interrupt_after_three)
    book = manifest.load(tmp_path)
    assert sorted(book.frames) == [0, 1, 2] and sorted(shas(tmp_path)) == [f"frame_00{i}.png" for i in range(3)]
    again = render_tiny("worlds-fair", tmp_path, tiny_backend)
    assert again.made == list(range(3, 10)) and again.kept == [0, 1, 2]


def test_prompt_longer_than_the_encoder_warns(tmp_path, tiny_backend):
    long_prompt = " ".join(["photo"] * 90)  # "photo" is one token, as in CLIP
    with pytest.warns(PromptTooLongWarning, match=r"Frame 1's prompt is 92 tokens; the text encoder reads 77"):
        render_tiny(storyboard.loads(json.dumps(["short", long_prompt])), tmp_path, tiny_backend)


def test_a_backend_passed_in_is_reused_and_left_open(tmp_path, tiny_backend):
    pipe = tiny_backend.pipe
    render_tiny(storyboard.loads('["one"]'), tmp_path / "first", tiny_backend)
    # the same loaded pipeline made the frame, and it still makes frames: render neither reloaded nor closed it
    assert tiny_backend.pipe is pipe
    second = render_tiny(storyboard.loads('["one"]'), tmp_path / "second", tiny_backend)
    assert second.made == [0] and (tmp_path / "first" / "frames" / "frame_000.png").read_bytes() == \
        (tmp_path / "second" / "frames" / "frame_000.png").read_bytes()


@pytest.mark.parametrize("kwargs,expected", [
    ({"steps": 0}, "Steps 0 is out of range"),
    # SD 1.x schedulers shift timesteps by one: a 1000th step would fail mid-frame (found by the busy-folder test)
    ({"steps": 1000}, "Steps 1000 is out of range.*from 1 to 999"),
    ({"steps": 1000, "scheduler": "dpm-solver++"}, "Steps 1000 is out of range.*from 1 to 999"),
    ({"guidance": -1.0}, "Guidance -1 is out of range"),
    ({"seed": -5}, "Seed -5 is out of range"),
    ({"size": "500"}, "Size 500 does not work.*try 496|Size 500 does not work.*try 504"),
    ({"size": "big"}, "Size 'big' is not understood"),
    ({"model": "sd99"}, "Unknown model 'sd99'"),
    ({"backend": "gpu"}, "Unknown backend 'gpu'"),
])
def test_bad_settings_are_refused_before_anything_is_written(tmp_path, kwargs, expected):
    with pytest.raises(TTLessonError, match=expected):
        render("worlds-fair", tmp_path / "out", **{"model": "tiny", **kwargs})
    assert not (tmp_path / "out").exists()


def test_parse_size_forms():
    assert parse_size(512) == (512, 512)
    assert parse_size("768x512") == (768, 512)
    assert parse_size((256, 128)) == (256, 128)
