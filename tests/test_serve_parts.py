"""The render service's parts that need no Ray: the fair queue, the request checks, the tokens file, and the
client's settings. Property-based where they read what users (or other programs) send."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ttlesson.errors import TTLessonError
from ttlesson.serve import is_loopback, read_tokens
from ttlesson.serve.fairness import FairQueue
from ttlesson.serve.protocol import RequestError, checked_request, order_from_json, read_body

QUICK = settings(max_examples=150, deadline=None)


def test_clients_take_turns_and_a_long_walk_does_not_starve_the_others():
    queue: FairQueue[str] = FairQueue()
    for number in range(1000):
        queue.put("walker", f"walk-{number}")
    queue.put("alice", "a-0")
    queue.put("alice", "a-1")
    queue.put("bob", "b-0")
    assert queue.position("alice", "a-0") == 2 and queue.position("bob", "b-0") == 3
    served = [queue.take() for _ in range(6)]
    assert [client for client, _ in served] == ["walker", "alice", "bob", "walker", "alice", "walker"]


def test_the_cap_keeps_a_client_to_its_frames_in_flight_and_a_lost_frame_goes_first():
    queue: FairQueue[str] = FairQueue(cap=1)
    queue.put("alice", "a-0")
    queue.put("alice", "a-1")
    assert queue.take() == ("alice", "a-0")
    assert queue.take() is None  # alice has her one frame on a device
    queue.put("alice", "a-0", front=True)  # its device died: it goes back, first in her line
    queue.done("alice")
    assert queue.take() == ("alice", "a-0")


def test_a_client_that_leaves_takes_its_waiting_frames_with_it():
    queue: FairQueue[str] = FairQueue()
    queue.put("alice", "a-0")
    queue.put("bob", "b-0")
    assert queue.cancel("alice", "a-0") and not queue.cancel("alice", "a-0")
    assert queue.waiting() == {"bob": 1} and queue.take() == ("bob", "b-0")


@QUICK
@given(st.lists(st.tuples(st.sampled_from("abc"), st.booleans()), max_size=60))
def test_every_frame_put_is_taken_once_and_no_client_goes_twice_while_another_waits(script):
    queue: FairQueue[tuple] = FairQueue()
    put, taken_items, last = [], [], {}
    moment = 0

    def take():
        nonlocal moment
        waiting = queue.waiting()
        taken = queue.take()
        if taken is not None:
            client = taken[0]
            # round robin: the client served is one that waited longest since its last frame
            assert last.get(client, -1) <= min(last.get(other, -1) for other in waiting), (client, last, waiting)
            last[client] = moment = moment + 1
            taken_items.append(taken[1])
            queue.done(client)
        return taken

    for number, (client, take_now) in enumerate(script):
        queue.put(client, (client, number))
        put.append((client, number))
        if take_now:
            take()
    while take() is not None:
        pass
    assert sorted(taken_items) == sorted(put) and len(queue) == 0 and not queue.in_flight


@QUICK
@given(st.binary(max_size=300))
def test_any_body_is_read_or_refused_in_one_sentence(raw):
    try:
        body = read_body(raw)
        order_from_json(body)
    except RequestError as err:
        assert "\n" not in str(err) and 400 <= err.status < 500


JSONISH = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                       lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                       max_size=3), max_leaves=10)


@QUICK
@given(st.fixed_dictionaries({}, optional={name: JSONISH for name in (
    "prompt", "seed", "steps", "guidance", "width", "height", "negative_prompt", "scheduler", "weight", "to_prompt")}))
def test_any_frame_request_is_checked_or_refused_with_a_4xx(values):
    try:
        request = checked_request(values)
    except RequestError as err:
        assert "\n" not in str(err) and 400 <= err.status < 500
        return
    assert isinstance(request.prompt, str) and 64 <= request.width <= 8192 and request.width % 8 == 0


def test_a_walk_in_between_needs_the_keyframe_it_walks_to():
    with pytest.raises(RequestError, match="needs to_prompt"):
        checked_request({"prompt": "a", "seed": 1, "steps": 4, "guidance": 2.5, "width": 64, "height": 64,
                         "weight": 0.5})


@QUICK
@given(st.text(max_size=400))
def test_any_tokens_file_is_read_or_refused_without_showing_a_token(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("tokens") / "tokens.txt"
    path.write_text(text, encoding="utf-8")
    try:
        tokens = read_tokens(path)
    except TTLessonError as err:
        message = str(err)
        assert "\n" not in message
        tokens_in_text = [line.split()[1] for line in text.splitlines()
                          if len(line.split("#")[0].split()) == 2]
        assert not any(len(token) >= 8 and token in message for token in tokens_in_text)
        return
    assert tokens and all(len(token) >= 8 for token in tokens)


def test_tokens_file_names_each_client():
    assert json.dumps(sorted(read_tokens_from("alice 0123456789ab\n# a comment\nbob abcdefghij12  # bob\n").values())) \
        == '["alice", "bob"]'


def read_tokens_from(text: str) -> dict:
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "tokens.txt"
        path.write_text(text)
        return read_tokens(path)


@pytest.mark.parametrize("host,loopback", [("127.0.0.1", True), ("::1", True), ("localhost", True),
                                           ("0.0.0.0", False), ("", False), ("192.0.2.7", False)])
def test_only_loopback_listens_without_a_token(host, loopback):
    assert is_loopback(host) is loopback


def test_serve_refuses_to_listen_beyond_loopback_without_a_token():
    from ttlesson.serve import ServiceOptions, serve

    with pytest.raises(TTLessonError, match="needs a token"):
        serve(ServiceOptions(), host="0.0.0.0", tokens={})


@pytest.mark.parametrize("given,url", [("127.0.0.1:8470", "http://127.0.0.1:8470"),
                                       ("https://room:8470/", "https://room:8470"), ("", None)])
def test_the_server_setting_is_a_url(given, url):
    from ttlesson.backends.remote import server_url

    assert server_url(given) == url


@pytest.mark.parametrize("given", ["ftp://x", "http://", "http://alice:secretpw@room:8470"])
def test_a_server_that_is_no_url_is_refused_without_showing_a_password(given):
    from ttlesson.backends.remote import server_url
    from ttlesson.errors import BackendUnavailableError

    with pytest.raises(BackendUnavailableError, match="not an http") as refused:
        server_url(given)
    assert "secretpw" not in str(refused.value)


def test_a_render_service_that_is_not_there_is_one_sentence(tmp_path):
    from helpers import call_cli, one_line_error

    proc = call_cli("render", "worlds-fair", "--model", "tiny", "--out", tmp_path / "out", "--server",
                    "http://127.0.0.1:9")
    assert "cannot be reached" in one_line_error(proc) and not (tmp_path / "out").exists()


def test_the_notebook_settings_show_the_server_only_when_set(monkeypatch):
    from ttlesson.notebook import settings

    monkeypatch.delenv("TTLESSON_SERVER", raising=False)
    assert "server" not in str(settings.current())
    monkeypatch.setenv("TTLESSON_SERVER", "room:8470")
    monkeypatch.setenv("TTLESSON_SERVER_TOKEN", "a-secret-token")
    shown = str(settings.current())
    assert "http://room:8470" in shown and "a-secret-token" not in shown


def test_serve_without_the_serve_extra_says_what_to_install(monkeypatch):
    import importlib.util

    from ttlesson.serve import ServiceOptions, serve

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    with pytest.raises(TTLessonError, match=r"needs ray.*pip install 'ttlesson\[serve\]'"):
        serve(ServiceOptions())
