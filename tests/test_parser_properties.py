"""Property-based tests (Hypothesis) for every parser of user input: storyboards, manifests, TTLESSON_* settings,
frame sizes and the stitch timing. Whatever the input, it is read or refused with a TTLessonError of one line;
no other exception ever escapes.
"""

from __future__ import annotations

import json
import math
import os
from contextlib import contextmanager

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from ttlesson import inputs, manifest, storyboard, video
from ttlesson.errors import TTLessonError

# TTLESSON_HYPOTHESIS_EXAMPLES=5000 searches harder (the suite's default keeps the run short on a 2-core machine).
QUICK = settings(max_examples=int(os.environ.get("TTLESSON_HYPOTHESIS_EXAMPLES", "150")), deadline=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# Any JSON value, with the odd cases users produce: huge and negative numbers, NaN, deep lists, long strings.
JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2 ** 70), max_value=2 ** 70),
                         st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30))
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)), max_leaves=20)


def one_line(err: TTLessonError) -> None:
    message = str(err)
    assert message and "\n" not in message, message


def reads_or_refuses(parse, *args, **kwargs):
    """The parser's result, or None after checking it refused with a one-line TTLessonError."""
    try:
        return parse(*args, **kwargs)
    except TTLessonError as err:
        one_line(err)
        return None


# --- storyboards --------------------------------------------------------------------------------------------

FRAME_LIKE = st.one_of(st.text(max_size=20), st.fixed_dictionaries(
    {"prompt": st.one_of(st.text(max_size=20), JSON_SCALARS)},
    optional={"seed": JSON_SCALARS, "negative_prompt": JSON_SCALARS, "promt": JSON_SCALARS}), JSON_VALUES)


@QUICK
@given(st.lists(FRAME_LIKE, max_size=6), st.sampled_from([0, None, 2]))
def test_any_json_storyboard_loads_or_is_refused_in_one_line(items, indent):
    text = json.dumps(items, indent=indent)
    board = reads_or_refuses(storyboard.loads, text, fmt="json", source="board.json")
    if board is not None:
        assert len(board) == len(items) and all(frame.prompt.strip() == frame.prompt for frame in board)
        assert all(frame.seed is None or 0 <= frame.seed <= storyboard.MAX_SEED for frame in board)


@QUICK
@given(st.text(max_size=200), st.sampled_from(["json", "txt", "yaml"]))
@example("[" * 50_000, "json")
@example('[{"prompt": "a"}] trailing', "json")
@example('[{"prompt": "a", "seed": ' + "9" * 5000 + "}]", "json")
def test_any_text_loads_or_is_refused_in_one_line(text, fmt):
    reads_or_refuses(storyboard.loads, text, fmt=fmt, source="board")


@QUICK
@given(st.binary(max_size=300), st.sampled_from([".json", ".txt", "", ".yaml", ".JSON"]))
def test_any_file_loads_or_is_refused_in_one_line(tmp_path_factory, data, suffix):
    path = tmp_path_factory.mktemp("board") / f"board{suffix}"
    path.write_bytes(data)
    reads_or_refuses(storyboard.load, path)


# --- manifests ----------------------------------------------------------------------------------------------

GOOD_RECORD = {"index": 0, "prompt": "a", "negative_prompt": None, "seed": 1, "steps": 4, "guidance": 7.5,
               "width": 64, "height": 64, "model": "tiny", "backend": "torch", "device": "cpu", "seconds": 1.0,
               "warmup": True, "sha256": "0" * 64}


@st.composite
def damaged_manifests(draw):
    """A valid manifest with some keys replaced by any JSON value, some removed, some frames replaced."""
    records = [dict(GOOD_RECORD, index=index) for index in range(draw(st.integers(0, 3)))]
    for record in records:
        for key in draw(st.lists(st.sampled_from(sorted(GOOD_RECORD)), max_size=3)):
            if draw(st.booleans()):
                record[key] = draw(JSON_VALUES)
            else:
                record.pop(key, None)
    body = {"schema": 1, "ttlesson": "0.1.0", "storyboard": "s", "frame_count": len(records), "frames": records}
    for key in draw(st.lists(st.sampled_from(sorted(body)), max_size=2)):
        body[key] = draw(JSON_VALUES)
    if draw(st.booleans()) and isinstance(body.get("frames"), list):
        body["frames"] = [draw(JSON_VALUES) if draw(st.booleans()) else item for item in body["frames"]]
    return body


@QUICK
@given(damaged_manifests())
@example({"schema": 1, "frame_count": 10 ** 9, "frames": []})
@example({"schema": 1, "storyboard": "../../escaped", "frame_count": 0, "frames": []})
def test_any_manifest_loads_or_is_refused_in_one_line(tmp_path_factory, body):
    folder = tmp_path_factory.mktemp("render")
    manifest.manifest_path(folder).write_text(json.dumps(body))
    book = reads_or_refuses(manifest.load, folder)
    if book is not None:
        assert 0 <= book.frame_count <= manifest.MAX_FRAMES and all(0 <= i < book.frame_count for i in book.frames)
        assert "/" not in book.video_name and not book.video_name.startswith(".")
        assert all(isinstance(record.seed, int) and isinstance(record.guidance, float)
                   for record in book.frames.values())
        manifest.check_frames(folder, book)  # and the checks that use it run


@QUICK
@given(st.text(max_size=300))
@example('{"frames": ' + "[" * 50_000)
def test_any_manifest_text_loads_or_is_refused_in_one_line(tmp_path_factory, text):
    folder = tmp_path_factory.mktemp("render")
    manifest.manifest_path(folder).write_text(text, encoding="utf-8", errors="surrogatepass")
    reads_or_refuses(manifest.load, folder)


@given(st.text())
def test_safe_names_stay_in_their_folder(name):
    safe = manifest.safe_name(name)
    assert safe and "/" not in safe and "\\" not in safe and not safe.startswith(".") and len(safe) <= 100


# --- settings -----------------------------------------------------------------------------------------------

ENV_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30)
VARIABLES = ("TTLESSON_MODEL", "TTLESSON_BACKEND", "TTLESSON_WORKDIR", "TTLESSON_STEPS", "TTLESSON_SIZE")


@contextmanager
def environment(values_by_name: dict[str, str]):
    saved = {name: os.environ.get(name) for name in values_by_name}
    os.environ.update(values_by_name)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@QUICK
@given(st.dictionaries(st.sampled_from(VARIABLES), st.one_of(ENV_TEXT, st.sampled_from(
    ["sd14", "tiny", "torch", "auto", "20", "512", "768x512", "²", "-5", "0", "1e3", "99999999999999"])), max_size=5))
def test_any_environment_reads_or_is_refused_naming_the_variable(env):
    from ttlesson.notebook import settings as settings_mod

    with environment(env):
        try:
            current = settings_mod.current()
        except TTLessonError as err:
            one_line(err)
            assert any(f"{name}=" in str(err) for name in env), str(err)
            return
    if "TTLESSON_STEPS" in env and env["TTLESSON_STEPS"].strip():
        assert 1 <= current.steps.value <= 1000
    if "TTLESSON_SIZE" in env and env["TTLESSON_SIZE"].strip():
        inputs.parse_size(current.size.value)


# --- sizes, numbers and the stitch timing -------------------------------------------------------------------

@QUICK
@given(st.one_of(JSON_VALUES, st.tuples(JSON_SCALARS, JSON_SCALARS), st.text(max_size=12),
                 st.from_regex(r"[0-9]{1,5}x[0-9]{1,5}", fullmatch=True)))
def test_any_size_parses_or_is_refused_in_one_line(size):
    parsed = reads_or_refuses(inputs.parse_size, size)
    if parsed is not None:
        assert all(64 <= side <= inputs.MAX_SIDE and side % 8 == 0 for side in parsed)


@QUICK
@given(st.floats(min_value=0.1, max_value=120), st.one_of(st.just(0.0), st.floats(min_value=0, max_value=10)))
@example(0.11, 0.0625)  # the advice once named 0.083, which is 1/12 s rounded below the shortest dissolve
def test_stitch_timing_is_exact_or_names_values_that_work(fps, crossfade):
    try:
        timing = video.plan_timing(fps, crossfade)
    except TTLessonError as err:
        one_line(err)
        message = str(err)
        if "give --crossfade " in message and "or 0 for cuts" in message:
            for value in message.split("give --crossfade ")[1].split(", or 0")[0].split(" or "):
                video.plan_timing(fps, float(value))
        return
    video_of_seven = timing.for_stills(7)
    assert video_of_seven.frames == 7 * timing.per_still and timing.per_still >= 1
    assert math.isclose(video_of_seven.frames / timing.rate, video_of_seven.duration, rel_tol=1e-9)
    if crossfade:
        assert timing.samples * timing.crossfade == 1 / timing.fps
        assert abs(float(timing.crossfade) - crossfade) <= video.CROSSFADE_TOLERANCE


@QUICK
@given(JSON_VALUES)
def test_any_number_argument_is_checked_in_one_line(value):
    assume(not isinstance(value, bool))
    reads_or_refuses(inputs.whole_number, value, "Steps", 1, 1000)
    reads_or_refuses(inputs.real_number, value, "--fps", 0.1, 120)


@pytest.mark.parametrize("value,shown", [(10 ** 5000, "a 5001-digit number"), ("x" * 500, "'" + "x" * 60 + "…'"),
                                         (3, "3")], ids=["huge", "long", "small"])
def test_values_are_shown_short(value, shown):
    assert inputs.shown(value) == shown
