"""The render service's parts that need no Ray: the fair queue, the request checks, the tokens file, the client's
settings, and which Tenstorrent nodes serve SD 3.5 Large. Property-based where they read what users (or other
programs) send, and for the cards each actor is given."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ttlesson.backends.protocol import RequestError, checked_request, order_from_json, read_body
from ttlesson.errors import TTLessonError
from ttlesson.serve import _ready_line, is_loopback, read_tokens
from ttlesson.serve.fairness import FairQueue
from ttlesson.serve.service import (
    GROUP,
    PER_CARD,
    SD35_MIN_CARDS,
    RenderService,
    ServiceOptions,
    TTNode,
    deal_tt_nodes,
    sd35_notice,
)

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


def test_every_field_of_a_frame_request_travels_to_the_service():
    # a field added to FrameRequest (a new per-frame setting) must reach the service's actor, or remote frames would
    # be made without it while the client's manifest records it
    from dataclasses import fields

    from ttlesson.backends.base import FrameRequest
    from ttlesson.backends.protocol import FrameOrder

    request = FrameRequest(prompt="a fair", seed=7, steps=3, guidance=4.5, width=72, height=80,
                           negative_prompt="fog", scheduler="dpm", to_prompt="a night fair", to_negative_prompt="rain",
                           to_seed=9, weight=0.25, noise_base=11, noise_mix=0.5)
    plain = FrameRequest(prompt="", seed=0, steps=1, guidance=0, width=64, height=64)
    assert all(getattr(request, f.name) != getattr(plain, f.name) for f in fields(FrameRequest)), (
        "give the new field a value other than its default above")
    body = json.loads(json.dumps(FrameOrder("tiny", request).to_dict()))
    assert order_from_json(body).request == request


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


# --- which Tenstorrent nodes serve SD 3.5 Large (a group of all their cards) and which the per-card models ----

def _serves(cards: dict[str, int], models: tuple[str, ...], groups: int = 0, per_card: int = 0) -> dict:
    nodes = [TTNode(name, "host", count) for name, count in cards.items()]
    return {node.node: node.serves for node in deal_tt_nodes(nodes, models, groups, per_card)}


@pytest.mark.parametrize("cards,models,serves", [
    ({"t3k": 4}, ("sd35-large",), {"t3k": GROUP}),
    ({"n300": 1, "t3k": 4}, ("sd35-large",), {"n300": None, "t3k": GROUP}),  # too small for the mesh: nothing
    ({"t3k": 4}, ("sd14", "sd35-large"), {"t3k": PER_CARD}),  # one node: the model named first
    ({"t3k": 4}, ("sd35-large", "sd14"), {"t3k": GROUP}),
    ({"t3k": 4, "n300": 2}, ("sd14", "sd35-large"), {"n300": PER_CARD, "t3k": GROUP}),  # small nodes dealt first
    ({"a": 4, "b": 4, "c": 4}, ("sd14", "sd35-large"), {"a": PER_CARD, "b": GROUP, "c": PER_CARD}),  # in turn
    ({"galaxy": 32, "t3k": 4}, ("sd35-large", "sd14"), {"t3k": GROUP, "galaxy": PER_CARD}),
    ({"t3k": 4, "n300": 1}, ("sd14", "tiny"), {"t3k": PER_CARD, "n300": PER_CARD}),  # no SD 3.5: every card
], ids=["alone", "too-small", "one-node", "one-node-sd35-first", "small-first", "alternate", "sd35-first",
        "no-sd35"])
def test_tenstorrent_nodes_are_dealt_between_sd35_and_the_per_card_models(cards, models, serves):
    assert _serves(cards, models) == serves


def test_a_node_that_joins_later_goes_to_what_fewer_nodes_serve():
    assert _serves({"late": 4}, ("sd14", "sd35-large"), groups=1, per_card=2) == {"late": GROUP}
    assert _serves({"late": 4}, ("sd14", "sd35-large"), groups=1, per_card=1) == {"late": PER_CARD}


def test_without_an_sd35_node_the_service_says_why_in_one_sentence():
    def notice(cards: dict[str, int], models: tuple[str, ...]) -> str | None:
        nodes = [TTNode(f"{name}-{'0' * 20}", "room-1", count) for name, count in cards.items()]
        return sd35_notice(deal_tt_nodes(nodes, models), models)

    small = notice({"n300": 1, "p300": 2}, ("sd14", "sd35-large"))
    assert small == ("SD 3.5 Large has no Tenstorrent node here (node n300-0000000 on room-1: 1 card; node "
                     "p300-0000000 on room-1: 2 cards): tt_dit runs it over all the cards of one node, which must be "
                     "a T3K (2×4), a Wormhole Galaxy (opened 4×8) or a 4-chip Blackhole QuietBox (opened as a 1×4 "
                     "ring), 4 cards or more; these cards serve sd14 instead.")
    assert notice({"n300": 1}, ("sd35-large",)).endswith("; run it on such a system, or serve --model sd14 on "
                                                          "these cards.")
    assert notice({"t3k": 4}, ("sd14", "sd35-large")).endswith(
        "the node that could hold it serves sd14, named before it: give --model sd35-large first to serve it there.")
    assert notice({"t3k": 4}, ("sd35-large", "sd14")) is None and notice({"n300": 1}, ("sd14",)) is None
    assert sd35_notice([], ("sd35-large",)) is None  # GPU and CPU nodes only: they serve it as before
    service = RenderService(ServiceOptions(models=("sd14", "sd35-large")))
    service.notices.append(small)
    assert _ready_line(service, "127.0.0.1", 8470, locked=False).endswith(f"TTLESSON_SERVER=http://127.0.0.1:8470"
                                                                           f"\n  {small}")


def _ray_node(name: str, **resources) -> dict:
    """A node as ``ray.nodes()`` lists it."""
    return {"NodeID": name * 8, "NodeManagerHostname": f"host-{name}", "Alive": True,
            "Resources": {"CPU": 1.0, **{key: float(value) for key, value in resources.items()}}}


def test_a_group_holds_all_its_nodes_cards_and_gpu_and_cpu_nodes_are_as_before():
    service = RenderService(ServiceOptions(models=("sd14", "sd35-large"), cpu_actors=2))
    slots = service._slots_for_nodes([_ray_node("a", TTNPU=4), _ray_node("b", TTNPU=2), _ray_node("c", GPU=2),
                                      _ray_node("d")])
    placed = [(slot.name, slot.kind, slot.model, slot.host, slot.cards) for slot in slots]
    assert placed == [("tt-group#1", "tt", "sd35-large", "host-a", 4),
                      ("tt#2", "tt", "sd14", "host-b", 1), ("tt#3", "tt", "sd14", "host-b", 1),
                      ("gpu#4", "gpu", "sd35-large", "host-c", 1), ("gpu#5", "gpu", "sd14", "host-c", 1),
                      ("cpu#6", "cpu", "sd35-large", "host-d", 1), ("cpu#7", "cpu", "sd14", "host-d", 1)]


@QUICK
@given(st.lists(st.integers(0, 40), min_size=1, max_size=6),
       st.lists(st.sampled_from(["sd14", "sd35-large", "tiny"]), min_size=1, max_size=3, unique=True))
def test_no_tenstorrent_card_is_given_twice_and_a_group_is_a_whole_node_that_can_hold_the_mesh(cards, models):
    service = RenderService(ServiceOptions(models=tuple(models)))
    nodes = [_ray_node(chr(ord("a") + number), TTNPU=count) for number, count in enumerate(cards) if count]
    slots = service._slots_for_nodes(nodes)
    for node in nodes:
        mine = [slot for slot in slots if slot.node == node["NodeID"]]
        held = sum(slot.cards for slot in mine)
        assert held in (0, node["Resources"]["TTNPU"])
        groups = [slot for slot in mine if slot.is_group]
        if groups:
            assert mine == groups and len(groups) == 1 and groups[0].model == "sd35-large"
            assert groups[0].cards >= SD35_MIN_CARDS
        assert all(slot.model != "sd35-large" for slot in mine if not slot.is_group)
    assert len({slot.name for slot in slots}) == len(slots)
    if "sd35-large" in models and any(count >= SD35_MIN_CARDS for count in cards) and len(nodes) > 1:
        assert any(slot.is_group for slot in slots)
