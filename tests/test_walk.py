"""Keyframe walks, how far they travel, seed modes and colour coherence: the real diffusers pipeline on the
offline tiny model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import call_cli, one_line_error
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image
from test_parser_properties import JSON_SCALARS, QUICK, reads_or_refuses

from ttlesson import manifest, storyboard, walk
from ttlesson.errors import TTLessonError
from ttlesson.fileio import sha256_file
from ttlesson.progress import FrameDone
from ttlesson.render import render

BOARD = storyboard.loads('["a red lighthouse on a cliff", "a blue submarine under ice", "a green forest at noon"]')


def render_tiny(out, backend, **kwargs):
    kwargs.setdefault("steps", 3)
    return render(BOARD, out, model="tiny", backend=backend, **kwargs)


def pixels(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.float64)


def frame_paths(result):
    return [result.out_dir / record.file for _, record in sorted(result.manifest.frames.items())]


@pytest.fixture(scope="module")
def alone(tmp_path_factory, tiny_backend):
    return render_tiny(tmp_path_factory.mktemp("alone"), tiny_backend)


@pytest.fixture(scope="module")
def walked(tmp_path_factory, tiny_backend):
    return render_tiny(tmp_path_factory.mktemp("walk"), tiny_backend, transition_frames=3)


# --- the plan -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("keyframes", [1, 2, 3, 10])
@pytest.mark.parametrize("between", [0, 1, 4, 7])
def test_frame_count_is_n_plus_n_minus_one_times_k(keyframes, between):
    frames = walk.plan([between] * (keyframes - 1))
    assert len(frames) == walk.frame_count(keyframes, between) == keyframes + (keyframes - 1) * between
    assert [f.index for f in frames] == list(range(len(frames)))
    assert [f.keyframe for f in frames if f.is_keyframe] == list(range(keyframes))
    assert [f.index for f in frames if f.is_keyframe] == [k * (between + 1) for k in range(keyframes)]
    for k in range(keyframes - 1):
        weights = [f.weight for f in frames if f.pair == (k, k + 1)]
        assert len(weights) == between and weights == sorted(weights) and all(0 < w < 1 for w in weights)


def test_easing_keeps_the_ends_and_slows_them():
    assert walk.ease(0, "ease-in-out") == 0 and walk.ease(1, "ease-in-out") == 1
    assert walk.ease(0.5, "ease-in-out") == pytest.approx(0.5)
    assert walk.ease(0.1, "ease-in-out") < 0.1 and walk.ease(0.9, "ease-in-out") > 0.9
    linear = [f.weight for f in walk.plan([4])][1:-1]
    eased = [f.weight for f in walk.plan([4], "ease-in-out")][1:-1]
    assert linear == [0.2, 0.4, 0.6, 0.8] and eased[0] < 0.2 and eased[-1] > 0.8


def test_a_keyframes_own_transition_frames_win_over_the_command_and_the_storyboard():
    board = storyboard.loads('{"transition_frames": 2, "easing": "ease-in-out", "frames": '
                             '["a", {"prompt": "b", "transition_frames": 5}, "c", "d"]}')
    assert board.transition_gaps() == [2, 5, 2] and board.transition_gaps(0) == [0, 5, 0]
    assert board.easing == "ease-in-out" and storyboard.loads(board.to_json()) == board
    assert len(walk.plan(board.transition_gaps(1))) == 4 + 1 + 5 + 1


@pytest.mark.parametrize("text, expected", [
    ('{"frames": ["a"], "transition_frame": 2}', 'unknown storyboard key "transition_frame"; did you mean '
                                                 '"transition_frames"?'),
    ('{"transition_frames": 2}', 'found an object; wrap the frames in [ ] (or in {"frames": [ ]})'),
    ('{"frames": ["a", "b"], "transition_frames": -1}', '"transition_frames" must be a whole number from 0 to 1000'),
    ('{"frames": ["a", "b"], "easing": "bounce"}', '"easing" must be one of linear, ease-in-out'),
    ('[{"prompt": "a"},\n {"prompt": "b", "transition_frames": 2.5}]', 'line 2 (frame 1): "transition_frames"'),
    ('{"frames": "a"}', '"frames" must be a list'),
])
def test_bad_walk_settings_get_one_sentence(text, expected):
    with pytest.raises(TTLessonError, match=None) as caught:
        storyboard.loads(text, source="board.json")
    assert expected in str(caught.value) and "\n" not in str(caught.value)


@QUICK
@given(board_k=st.one_of(st.integers(-3, 1003), JSON_SCALARS), frame_ks=st.lists(
    st.one_of(st.none(), st.integers(-3, 1003), JSON_SCALARS), min_size=1, max_size=5),
    easing=st.one_of(st.none(), st.sampled_from(walk.EASINGS), st.text(max_size=8)),
    cli_k=st.none() | st.integers(0, 9))
def test_any_transition_frames_read_or_refused_in_one_line(board_k, frame_ks, easing, cli_k):
    items = [{"prompt": f"p{i}", **({} if k is None else {"transition_frames": k})} for i, k in enumerate(frame_ks)]
    body = {"frames": items, "transition_frames": board_k, **({} if easing is None else {"easing": easing})}
    board = reads_or_refuses(storyboard.loads, json.dumps(body), source="board.json")
    if board is None:
        return
    def accepted(k):
        return k is None or (isinstance(k, int) and not isinstance(k, bool) and 0 <= k <= walk.MAX_TRANSITION_FRAMES)

    assert accepted(board_k) and all(accepted(k) for k in frame_ks) and easing in (None, *walk.EASINGS)
    default = cli_k if cli_k is not None else (board_k or 0)
    assert board.transition_gaps(cli_k) == [default if k is None else k for k in frame_ks[:-1]]
    assert storyboard.loads(board.to_json()) == board


# --- slerp ----------------------------------------------------------------------------------------------------

VECTORS = st.lists(st.floats(-10, 10, allow_nan=False, width=32), min_size=2, max_size=16)


@QUICK
@given(VECTORS, VECTORS, st.floats(0, 1))
def test_slerp_endpoints_are_exact(a, b, t):
    size = min(len(a), len(b))
    a, b = torch.tensor(a[:size]), torch.tensor(b[:size])
    assert torch.equal(walk.slerp(a, b, 0.0), a) and torch.equal(walk.slerp(a, b, 1.0), b)
    out = walk.slerp(a, b, t)
    assert out.dtype == torch.float32 and out.shape == a.shape and torch.isfinite(out).all()


@QUICK
@given(VECTORS, VECTORS, st.floats(0, 1))
def test_slerp_keeps_unit_vectors_on_the_sphere(a, b, t):
    size = min(len(a), len(b))
    a, b = torch.tensor(a[:size], dtype=torch.float64), torch.tensor(b[:size], dtype=torch.float64)
    if a.norm() < 1e-3 or b.norm() < 1e-3:
        return
    a, b = (a / a.norm()).float(), (b / b.norm()).float()
    dot = float(a @ b)
    if dot < -0.999:  # opposite vectors: no unique great circle
        return
    assert float(walk.slerp(a, b, t).norm()) == pytest.approx(1.0, abs=2e-3 if dot > walk.PARALLEL_DOT else 1e-4)


@QUICK
@given(VECTORS, st.floats(0.5, 2), st.floats(0, 1))
def test_nearly_parallel_inputs_fall_back_to_lerp(a, scale, t):
    a = torch.tensor(a)
    if a.norm() < 1e-3:
        return
    b = a * scale
    assert torch.allclose(walk.slerp(a, b, t), walk.lerp(a, b, t), atol=1e-5)


def test_slerp_between_gaussian_noises_keeps_their_spread():
    a, b = walk.seed_noise(1, (1, 4, 32, 32)), walk.seed_noise(2, (1, 4, 32, 32))
    middle = walk.slerp(a, b, 0.5)
    assert float(middle.std()) == pytest.approx(1.0, abs=0.05)  # lerp would give about 0.71
    assert float(walk.lerp(a, b, 0.5).std()) < 0.8


def test_mixed_noise_keeps_unit_variance_and_keyframe_zero_is_the_base():
    base = walk.keyframe_noise(7, (1, 4, 64, 64), base_seed=7, mix=0.3)
    assert torch.equal(base, walk.seed_noise(7, (1, 4, 64, 64)))
    mixed = walk.keyframe_noise(8, (1, 4, 64, 64), base_seed=7, mix=0.3)
    assert float(mixed.std()) == pytest.approx(1.0, abs=0.03)
    assert float(torch.corrcoef(torch.stack([mixed.flatten(), base.flatten()]))[0, 1]) == pytest.approx(0.837, abs=0.03)


# --- walks on the tiny model ------------------------------------------------------------------------------------

def test_walk_has_every_frame_once_marked_in_the_manifest(walked):
    records = [record for _, record in sorted(walked.manifest.frames.items())]
    assert len(records) == 3 + 2 * 3 and walked.manifest.frame_count == 9
    assert [r.index for r in records if r.is_keyframe] == [0, 4, 8] == walked.manifest.keyframes
    assert [r.keyframe for r in records] == [0, None, None, None, 1, None, None, None, 2]
    assert [r.pair for r in records if not r.is_keyframe] == [(0, 1)] * 3 + [(1, 2)] * 3
    assert [r.weight for r in records if not r.is_keyframe] == [0.25, 0.5, 0.75] * 2
    between = records[5]
    assert (between.prompt, between.seed, between.to_prompt, between.to_seed) == (BOARD[1].prompt, 1,
                                                                                  BOARD[2].prompt, 2)
    shas = [sha256_file(path) for path in frame_paths(walked)]
    assert len(set(shas)) == len(shas)  # no frame repeated, at the boundaries or anywhere
    again = manifest.load(walked.out_dir)
    assert again.frames == walked.manifest.frames  # the new fields read back


def test_keyframes_in_a_walk_are_byte_identical_to_keyframes_rendered_alone(walked, alone):
    alone_paths, walk_paths = frame_paths(alone), frame_paths(walked)
    for keyframe, index in enumerate(walked.manifest.keyframes):
        assert walk_paths[index].read_bytes() == alone_paths[keyframe].read_bytes()


def test_each_walk_step_is_smaller_than_its_keyframe_jump(tmp_path, tiny_backend):
    # Prompts the tiny model learned: a blend of two prompts it never saw ("a red lighthouse") is text it has
    # never read either, and its walk may pass through unrelated scenes on the way.
    board = storyboard.loads('["a dome on a sunny day", "a rocket at night", "a fountain at sunset"]')
    result = render(board, tmp_path, model="tiny", backend=tiny_backend, steps=3, transition_frames=3)
    images = [pixels(path) for path in frame_paths(result)]
    keyframes = result.manifest.keyframes
    for start, end in zip(keyframes, keyframes[1:]):
        jump = np.abs(images[end] - images[start]).mean()
        steps = [np.abs(images[i + 1] - images[i]).mean() for i in range(start, end)]
        assert max(steps) < jump, (start, end, steps, jump)


def _interrupt_after(count: int, done: list[int]):
    """An ``on_event`` that notes each finished frame in ``done`` and presses Ctrl-C after ``count`` of them."""

    def on_event(event):
        if isinstance(event, FrameDone):
            done.append(event.index)
            if len(done) == count:
                raise KeyboardInterrupt

    return on_event


def test_a_walk_resumes_mid_walk(tmp_path, tiny_backend, walked):
    with pytest.raises(KeyboardInterrupt):
        render_tiny(tmp_path, tiny_backend, transition_frames=3, on_event=_interrupt_after(5, []))
    assert sorted(manifest.load(tmp_path).frames) == [0, 1, 2, 3, 4]
    result = render_tiny(tmp_path, tiny_backend, transition_frames=3)
    assert result.kept == [0, 1, 2, 3, 4] and result.made == [5, 6, 7, 8]
    assert [p.read_bytes() for p in frame_paths(result)] == [p.read_bytes() for p in frame_paths(walked)]


def test_another_transition_count_is_a_settings_change(tmp_path, tiny_backend):
    render_tiny(tmp_path, tiny_backend, transition_frames=1)
    with pytest.raises(TTLessonError, match="pass --overwrite"):
        render_tiny(tmp_path, tiny_backend, transition_frames=2)


def test_seed_modes(tmp_path, tiny_backend, alone):
    shared = render_tiny(tmp_path / "shared", tiny_backend, seed=5, seed_mode="shared")
    assert [r.seed for _, r in sorted(shared.manifest.frames.items())] == [5, 5, 5]
    mixed = render_tiny(tmp_path / "mixed", tiny_backend, seed_mode="mixed", noise_mix=0.5)
    records = [r for _, r in sorted(mixed.manifest.frames.items())]
    assert [(r.seed, r.noise_base, r.noise_mix) for r in records] == [(0, 0, 0.5), (1, 0, 0.5), (2, 0, 0.5)]
    assert frame_paths(mixed)[0].read_bytes() == frame_paths(alone)[0].read_bytes()  # keyframe 0 is the base
    assert frame_paths(mixed)[1].read_bytes() != frame_paths(alone)[1].read_bytes()
    with pytest.raises(TTLessonError, match="seed mode mixed only"):
        render_tiny(tmp_path / "x", tiny_backend, noise_mix=0.5)
    with pytest.raises(TTLessonError, match="Seed mode 'random' is not known"):
        render_tiny(tmp_path / "x", tiny_backend, seed_mode="random")


# --- how far a walk travels, on the tiny model ----------------------------------------------------------------

WALK_DEMO = storyboard.load("worlds-fair-walk")  # notebook 06's walk: only the structure changes


def steps_of(along):
    return [b - a for a, b in zip(along, along[1:])]


def test_travel_measures_how_far_along_each_frame_looks():
    black, white = np.zeros((4, 4, 3)), np.full((4, 4, 3), 200.0)
    assert walk.travel([black, white * 0.25, white * 0.5, white]) == pytest.approx([0, 0.25, 0.5, 1])
    assert walk.travel([Image.new("RGB", (4, 4), "red")] * 3) == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="two keyframes"):
        walk.travel([black])


def test_the_walk_demo_travels_steadily_on_the_tiny_model(tmp_path, tiny_backend):
    # At the tiny model's own settings (128×128, 10 steps), as notebook 06 renders it: each in-between looks
    # further along than the one before, and no step between neighbours carries most of the way (an even walk
    # with 4 in-betweens moves 0.2 a step; a cut moves 0.8 or more in one).
    result = render(WALK_DEMO, tmp_path, model="tiny", backend=tiny_backend, transition_frames=4)
    frames = [Image.open(path) for path in frame_paths(result)]
    keyframes = result.manifest.keyframes
    for start, end in zip(keyframes, keyframes[1:]):
        along = walk.travel(frames[start:end + 1])
        assert along == sorted(along) and max(steps_of(along)) < 0.6, along


def test_a_walk_between_two_times_of_day_cuts_on_the_tiny_model(tmp_path, tiny_backend):
    # What the measure tells apart, and what docs/offline-model.md says: the tiny model learned four separate
    # times of day and nothing between them, so the same walk from day to night jumps in one step.
    day = WALK_DEMO[0].prompt
    board = storyboard.loads(json.dumps([day, day.replace("on a sunny day", "at night")]))
    result = render(board, tmp_path, model="tiny", backend=tiny_backend, transition_frames=4)
    along = walk.travel([Image.open(path) for path in frame_paths(result)])
    assert max(steps_of(along)) > 0.7, along


# --- colour coherence: keyframes keep their colours, in-betweens move between theirs --------------------------

DAY_NIGHT = storyboard.loads(json.dumps([WALK_DEMO[0].prompt, WALK_DEMO[0].prompt.replace("on a sunny day", "at night"),
                                         WALK_DEMO[2].prompt]))


@pytest.fixture(scope="module")
def day_night(tmp_path_factory, tiny_backend):
    """A day → night → day walk, plain and with colour coherence."""
    def made(name, **kwargs):
        return render(DAY_NIGHT, tmp_path_factory.mktemp(name), model="tiny", backend=tiny_backend, steps=4,
                      transition_frames=3, **kwargs)

    return made("plain"), made("coherent", colour="lab")


def test_colour_coherence_keeps_each_keyframe_and_its_story(day_night):
    plain, coherent = day_night
    records = [r for _, r in sorted(coherent.manifest.frames.items())]
    assert [r.colour_match for r in records] == ["", "lab", "lab", "lab", "", "lab", "lab", "lab", ""]
    assert {r.colour_reference.split(" (")[0] for r in records if r.pair} == {"frames 0 and 4", "frames 4 and 8"}
    for index in coherent.manifest.keyframes:  # keyframes are the story: not matched to anything
        assert frame_paths(coherent)[index].read_bytes() == frame_paths(plain)[index].read_bytes()
    lightness = [walk.mean_lightness(Image.open(path)) for path in frame_paths(coherent)]
    assert lightness[4] < 25 < 45 < min(lightness[0], lightness[8])  # the night keyframe stays dark


def test_colour_coherence_moves_each_in_between_by_its_weight(day_night):
    plain, coherent = day_night
    lightness = [walk.mean_lightness(Image.open(path)) for path in frame_paths(coherent)]
    for record in (r for _, r in sorted(coherent.manifest.frames.items()) if r.pair):
        first, second = (lightness[4 * k] for k in record.pair)
        assert lightness[record.index] == pytest.approx((1 - record.weight) * first + record.weight * second, abs=1.5)
    plain_lightness = [walk.mean_lightness(Image.open(path)) for path in frame_paths(plain)]
    jumps = [abs(b - a) for a, b in zip(lightness, lightness[1:])]
    assert max(jumps) < max(abs(b - a) for a, b in zip(plain_lightness, plain_lightness[1:]))


def test_colour_coherence_resumes_from_kept_keyframes_to_the_same_bytes(tmp_path, tiny_backend, day_night):
    _, coherent = day_night
    done: list[int] = []

    def again(**kwargs):
        return render(DAY_NIGHT, tmp_path, model="tiny", backend=tiny_backend, steps=4, transition_frames=3,
                      colour="lab", **kwargs)

    with pytest.raises(KeyboardInterrupt):
        again(on_event=_interrupt_after(3, done))
    assert done == [0, 4, 8]  # keyframes first: each in-between needs both of its own
    resumed = again()  # the in-betweens matched to keyframes read back from the folder
    assert resumed.kept == [0, 4, 8] and resumed.made == [1, 2, 3, 5, 6, 7]
    assert [p.read_bytes() for p in frame_paths(resumed)] == [p.read_bytes() for p in frame_paths(coherent)]
    assert again().made == []  # deterministic and recorded: nothing made twice


def test_an_in_between_takes_the_mean_and_spread_of_its_keyframes_colours_by_its_weight():
    from skimage.color import rgb2lab

    from ttlesson.offline import scenes

    day, night, frame = (scenes.Scene.random(seed, time=time).draw(64)
                         for seed, time in ((1, "day"), (2, "night"), (3, "sunset")))

    def moments(image):
        lab = rgb2lab(np.asarray(image, dtype=np.float64) / 255).reshape(-1, 3)
        return np.concatenate([lab.mean(0), lab.std(0)])

    weights = [0, 0.25, 0.5, 0.75, 1]
    matched = [walk.match_colours_between(frame, day, night, w) for w in weights]
    for w, image in zip(weights, matched):
        expected = (1 - w) * moments(day) + w * moments(night)
        # lightness exactly, up to 8-bit rounding; colours as near as sRGB's gamut lets them come
        assert walk.mean_lightness(image) == pytest.approx(expected[0], abs=2.5), w
        assert np.linalg.norm(moments(image) - expected) < 0.3 * np.linalg.norm(moments(frame) - expected), w
    light = [walk.mean_lightness(image) for image in matched]
    assert light == sorted(light, reverse=True) and light[0] > 50 > 20 > light[-1]
    again = walk.match_colours_between(frame, day, night, 0.25)
    assert again.tobytes() == matched[1].tobytes()  # deterministic
    flat = Image.new("RGB", (8, 8), (90, 90, 90))  # no spread to scale: shifted only
    assert walk.match_colours_between(flat, day, night, 0.5).size == (8, 8)
    with pytest.raises(ValueError, match="between 0 and 1"):
        walk.match_colours_between(frame, day, night, 1.5)


def test_a_walk_on_sd3_is_refused_before_anything_loads(tmp_path):
    with pytest.raises(TTLessonError, match="run on SD 1.x models"):
        render(BOARD, tmp_path, model="sd35-large", backend="torch", transition_frames=2)
    assert not list(tmp_path.iterdir())


def test_cli_walk_arguments(tmp_path):
    message = one_line_error(call_cli("render", "worlds-fair", "--out", tmp_path, "--model", "tiny",
                                     "--transition-frames", "-1"))
    assert "--transition-frames '-1' is not a whole number from 0 to 1000" in message
    message = one_line_error(call_cli("render", "worlds-fair", "--out", tmp_path, "--model", "tiny",
                                     "--noise-mix", "0.5"))
    assert "applies to seed mode mixed only" in message


# --- the tt backend, through the STAND-IN device layer (tests/standin_tt.py), not ttnn ------------------------

def test_the_tt_trace_is_fed_interpolated_embeddings_and_latents_per_frame(tmp_path, tiny_folder):
    import torch
    from standin_tt import StandInTTNN, fingerprint, sd14_shaped_host, standin_sd14_modules

    def on_device(values):  # the trace's buffers hold bfloat16, as real ttnn's do
        return fingerprint(values.to(torch.bfloat16))
    from ttlesson import models
    from ttlesson.backends import FrameRequest
    from ttlesson.backends.tt.chip import LATENT_SHAPE, initial_latents, load_host_models, text_embeddings
    from ttlesson.backends.tt.runtime import Runtime
    from ttlesson.backends.tt.sd14 import TTSD14Backend

    host = sd14_shaped_host(load_host_models(models.resolve("tiny")))  # embeddings fit the [2, 96, 768] buffer
    stub = StandInTTNN(chips=1)
    runtime = Runtime(ttnn_loader=lambda: stub, driver_check=lambda: True,
                      sd14_loader=lambda arch: standin_sd14_modules(stub), host_loader=lambda spec: host)
    board = storyboard.loads('["a harbour at dawn", {"prompt": "a lighthouse", "negative_prompt": "fog"}]')
    with TTSD14Backend(models.resolve("sd14"), runtime=runtime) as backend:
        result = render(board, tmp_path, model="sd14", backend=backend, steps=4, transition_frames=2)

    records = [r for _, r in sorted(result.manifest.frames.items())]
    assert [r.weight for r in records] == [0.0, 0.333333, 0.666667, 0.0] and len(records) == 4
    copies = [entry for entry in stub.log if entry[0] == "copy"][1:]  # [0]: the compile run's latents
    first, second = text_embeddings(host, board[0].prompt, None), text_embeddings(host, board[1].prompt, "fog")
    noise_a, noise_b = initial_latents(0), initial_latents(1)
    for record, (embeddings_copy, latents_copy) in zip(records, zip(copies[0::2], copies[1::2])):
        weight = record.weight if record.pair else (0.0 if record.keyframe == 0 else 1.0)
        expected_embeddings = walk.lerp(first, second, weight)
        expected_latents = walk.slerp(noise_a, noise_b, weight)
        assert embeddings_copy[3] == on_device(expected_embeddings)
        assert latents_copy[3] == on_device(expected_latents)
    assert copies[1][3] == on_device(initial_latents(0)) and copies[7][3] == on_device(initial_latents(1))
    request = FrameRequest(prompt="x", seed=3, steps=4, guidance=7.5, width=512, height=512, to_prompt="y",
                           to_seed=4, weight=0.5)
    assert walk.start_noise(request, LATENT_SHAPE).shape == LATENT_SHAPE


# --- stitching a walk: seconds per keyframe, a soundtrack -------------------------------------------------------

@pytest.fixture(scope="module")
def tone(tmp_path_factory):
    """Four seconds of a 440 Hz tone, made by the same ffmpeg."""
    from ttlesson import child_processes, video

    path = tmp_path_factory.mktemp("audio") / "tone.m4a"
    code, _, err = child_processes.run([video.find_ffmpeg(), "-hide_banner", "-nostdin", "-f", "lavfi", "-i",
                                 "sine=frequency=440:duration=4", "-c:a", "aac", str(path)])
    assert code == 0, err
    return path


def test_seconds_per_keyframe_sets_the_length_to_the_frame(walked, tmp_path):
    from ttlesson import video

    info = video.stitch(walked.out_dir, tmp_path / "even.mp4", seconds_per_keyframe=1.5)
    assert (info.frames, info.fps) == (3 * 36, 24.0) and info.duration == pytest.approx(4.5, abs=0.03)
    timeline = video.plan_timeline(walked.manifest.keyframes, 9, 1.5, hold=0.5)
    assert timeline.counts == (12 + 6, 6, 6, 6, 18, 6, 6, 6, 36) and timeline.frames == 108
    held = video.stitch(walked.out_dir, tmp_path / "held.mp4", seconds_per_keyframe=1.5, hold=0.5, crossfade=0.125)
    assert held.frames == 108 and held.duration == pytest.approx(4.5, abs=0.03)
    odd = video.plan_timeline([0, 3, 6], 7, 1.01)  # 3.03 s: 72.72 frames at 24 fps, rounded to 73
    assert odd.frames == 73 and min(odd.counts) >= 1


def test_a_walk_too_fast_for_the_video_is_refused_with_the_pace_that_works(walked):
    from ttlesson import video
    from ttlesson.errors import VideoError

    with pytest.raises(VideoError, match=r"shorter than one frame of the 24 fps video; give --seconds-per-keyframe "
                                         r"0\.17 or more"):
        video.plan_timeline(walked.manifest.keyframes, 9, 0.1)
    with pytest.raises(VideoError, match="does not fit this walk's pace"):
        video.plan_timeline(walked.manifest.keyframes, 9, 1.0, crossfade=0.5)


def test_the_soundtrack_is_aac_as_long_as_the_video(walked, tmp_path, tone):
    from ttlesson import video

    cut = video.stitch(walked.out_dir, tmp_path / "cut.mp4", seconds_per_keyframe=1, audio=tone)
    assert cut.audio == "aac" and cut.audio_duration == pytest.approx(3.0, abs=0.05)
    assert cut.duration == pytest.approx(3.0, abs=0.05) and cut.frames == 72
    padded = video.stitch(walked.out_dir, tmp_path / "padded.mp4", fps=1, audio=tone)  # 9 frames, 9 s
    assert padded.audio_duration == pytest.approx(9.0, abs=0.05) and padded.frames == 9
    fitted = video.stitch(walked.out_dir, tmp_path / "fit.mp4", audio=tone, fit_audio=True)
    assert fitted.duration == pytest.approx(4.0, abs=0.05) and fitted.audio_duration == pytest.approx(4.0, abs=0.05)
    assert video.probe(fitted.path).audio == "aac"


def test_audio_mistakes_are_one_sentence(walked, tmp_path):
    message = one_line_error(call_cli("stitch", walked.out_dir, "--output", tmp_path / "a.mp4", "--audio",
                                     tmp_path / "missing.mp3"))
    assert "--audio" in message and "does not exist" in message
    (tmp_path / "notes.mp3").write_text("not sound")
    message = one_line_error(call_cli("stitch", walked.out_dir, "--output", tmp_path / "a.mp4", "--audio",
                                     tmp_path / "notes.mp3"))
    assert "holds no sound ffmpeg can read" in message
    message = one_line_error(call_cli("stitch", walked.out_dir, "--output", tmp_path / "a.mp4", "--fit-audio"))
    assert "add --audio FILE" in message
    assert not (tmp_path / "a.mp4").exists()


# --- the manifest: old records still read, walk records checked -----------------------------------------------

WALK_KEYS = ("keyframe", "pair", "weight", "to_prompt", "to_negative_prompt", "to_seed", "noise_base", "noise_mix",
             "colour_match", "colour_reference")


def test_a_manifest_from_before_walks_reads_and_its_frames_are_kept(alone, tmp_path):
    import shutil

    shutil.copytree(alone.out_dir, tmp_path / "old")
    path = manifest.manifest_path(tmp_path / "old")
    body = json.loads(path.read_text())
    body["frames"] = [{k: v for k, v in record.items() if k not in WALK_KEYS} for record in body["frames"]]
    path.write_text(json.dumps(body))
    book = manifest.load(tmp_path / "old")
    assert all(r.pair is None and r.keyframe is None and r.weight == 0.0 for r in book.frames.values())
    assert book.keyframes == [0, 1, 2]
    again = render(BOARD, tmp_path / "old", model="tiny", backend="torch", steps=3)
    assert again.made == [] and again.kept == [0, 1, 2]


WALK_RECORD = {"index": 1, "prompt": "a", "negative_prompt": None, "seed": 0, "steps": 4, "guidance": 7.5,
               "width": 64, "height": 64, "model": "tiny", "backend": "torch", "keyframe": None, "pair": [0, 1],
               "weight": 0.5, "to_prompt": "b", "to_negative_prompt": None, "to_seed": 1, "noise_base": None,
               "noise_mix": 0.0, "colour_match": "lab", "colour_reference": "frame 0 (0123456789abcdef)"}


@QUICK
@given(st.dictionaries(st.sampled_from(WALK_KEYS), JSON_SCALARS | st.lists(JSON_SCALARS, max_size=3), max_size=4))
def test_any_walk_record_reads_or_is_refused_in_one_line(tmp_path_factory, damage):
    folder = tmp_path_factory.mktemp("render")
    body = {"schema": 1, "storyboard": "s", "frame_count": 3, "frames": [{**WALK_RECORD, **damage}]}
    manifest.manifest_path(folder).write_text(json.dumps(body))
    book = reads_or_refuses(manifest.load, folder)
    if book is not None:
        record = book.frames[1]
        assert record.pair is None or (isinstance(record.pair, tuple) and record.pair[1] == record.pair[0] + 1)
        assert 0 <= record.weight <= 1 and isinstance(record.weight, float) and 0 <= record.noise_mix <= 1
