"""The render service (``ttlesson serve``) on a real Ray cluster of two nodes on this machine, the tiny model on
CPU actors (one thread each), and clients that are real renders (``ttlesson.render(server=…)`` and the console
script with ``--server``). Only the Tenstorrent card is a stand-in (tests/standin_tt.py), behind Ray's real
``TTNPU`` resource.

The whole module runs inside a private network namespace (tests/ray_cluster.py): Ray and the service listen on
loopback only. Each cluster, node and service is stopped by its pid when the module ends, pass or fail.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers import ttlesson_command
from ray_cluster import (
    Cluster,
    can_enter_private_network,
    enter_private_network,
    ray_environment,
    short_folder,
    start_service,
)

from ttlesson import render
from ttlesson.storyboard import Frame, Storyboard

pytest.importorskip("ray")
pytestmark = pytest.mark.slow

PORT = 8470
TOKEN = "room-token-" + "x" * 16
SIZE, STEPS = 64, 8  # frames long enough that two clients started together overlap even on a busy machine


def _why_not() -> str | None:
    why = can_enter_private_network()
    if why and os.environ.get("CI"):
        pytest.fail(f"the serve tests cannot run here: {why}")
    return why


@pytest.fixture(scope="module")
def loopback():
    why = _why_not()
    if why:
        pytest.skip(why)
    enter_private_network()


@pytest.fixture(scope="module")
def room(loopback, tmp_path_factory):
    """Two nodes (one CPU each: one actor each) and the service on them, a token required."""
    tmp = tmp_path_factory.mktemp("room")
    cluster = Cluster(tmp)
    room = None
    try:
        cluster.add_node(cpus=1)
        cluster.add_node(cpus=1)
        tokens = tmp / "tokens.txt"
        tokens.write_text(f"alice {TOKEN}-alice\nbob {TOKEN}-bob\n")
        room = Room(cluster, start_service(cluster, PORT, "--model", "tiny", "--tokens", str(tokens), "--threads",
                                           "1"), tmp)
        yield room
    finally:
        if room is not None:
            room.service.stop()  # the one running now: a test may have restarted it
        cluster.stop()


class Room:
    url = f"http://127.0.0.1:{PORT}"

    def __init__(self, cluster, service, tmp):
        self.cluster, self.service, self.tmp = cluster, service, tmp

    def client_env(self, name: str) -> dict:
        return {"TTLESSON_SERVER": self.url, "TTLESSON_SERVER_TOKEN": f"{TOKEN}-{name}"}

    def status(self, name: str = "alice") -> dict:
        return self.get("/v1/status", name).json()

    def get(self, path: str, name: str | None = "alice"):
        import httpx

        headers = {"Authorization": f"Bearer {TOKEN}-{name}"} if name else {}
        return httpx.get(self.url + path, headers=headers, timeout=30, trust_env=False)

    def post(self, path: str, body, name: str | None = "alice", **headers):
        import httpx

        if name:
            headers["Authorization"] = f"Bearer {TOKEN}-{name}"
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return httpx.post(self.url + path, content=content, headers=headers, timeout=120, trust_env=False)


def board(name: str, count: int, offset: int = 0) -> Storyboard:
    scenes = ["a fair at dawn", "a fair at noon", "a dome at dusk", "a tower at night", "a crowd at noon",
              "a monorail at dusk"]
    return Storyboard([Frame(scenes[(offset + i) % len(scenes)], seed=100 + offset + i) for i in range(count)], name)


def render_through(room: Room, name: str, story: Storyboard, out: Path, events: list | None = None,
                   start: threading.Barrier | None = None):
    """``name``'s render through the service from a thread of this process: with its own token, given to the
    client engine (the environment is the process's, shared by the threads); ``start``: wait for the others."""
    from ttlesson import models
    from ttlesson.backends.remote import RemoteBackend

    engine = RemoteBackend(models.resolve("tiny"), room.url, f"{TOKEN}-{name}").connect()
    if start is not None:
        start.wait(60)
    try:
        return render(story, out, model="tiny", steps=STEPS, size=SIZE, backend=engine,
                      on_event=(lambda event: events.append((time.monotonic(), event))) if events is not None else None)
    finally:
        engine.close()


class _env:
    """Environment variables for one single-threaded block, restored after it."""

    def __init__(self, values):
        self.values, self.saved = values, {}

    def __enter__(self):
        for key, value in self.values.items():
            self.saved[key] = os.environ.get(key)
            os.environ[key] = value

    def __exit__(self, *exc):
        for key, value in self.saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def frames_of(out: Path) -> dict[int, bytes]:
    return {int(path.stem.split("_")[1]): path.read_bytes() for path in (out / "frames").glob("frame_*.png")}


def local_frames(story: Storyboard, out: Path) -> dict[int, bytes]:
    """The same frames made here, in this process, with the service's thread count (1)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        render(story, out, model="tiny", steps=STEPS, size=SIZE, backend="torch", server="")
    finally:
        torch.set_num_threads(threads)
    return frames_of(out)


# --- the tests, in the order the module runs them (the killed node last) ------------------------------------

def test_two_clients_at_once_get_the_local_bytes_and_take_turns(room, tmp_path):
    stories = {"alice": board("alice", 6), "bob": board("bob", 6, offset=2)}
    events = {name: [] for name in stories}
    results, errors = {}, []
    start = threading.Barrier(len(stories))  # both connected, then both render: the frames must interleave

    def client(name):
        try:
            results[name] = render_through(room, name, stories[name], tmp_path / name, events[name], start)
        except BaseException as err:  # reported below
            errors.append(err)

    threads = [threading.Thread(target=client, args=(name,)) for name in stories]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert not errors, errors
    done = {name: [at for at, event in events[name] if type(event).__name__ == "FrameDone"] for name in stories}
    assert all(len(times) == 6 for times in done.values())
    # neither waited for the other to end: each had a frame done before the other's last
    assert min(done["alice"]) < max(done["bob"]) and min(done["bob"]) < max(done["alice"])
    for name, story in stories.items():
        served = frames_of(tmp_path / name)
        assert served == local_frames(story, tmp_path / f"{name}-local"), f"{name}'s frames differ from local ones"
        book = json.loads((tmp_path / name / "manifest.json").read_text())
        devices = [record["device"] for record in book["frames"]]
        assert all("ttlesson serve at " + room.url in device and " node " in device for device in devices)
        assert TOKEN not in (tmp_path / name / "manifest.json").read_text()
    status = room.status()
    assert status["you"] == "alice" and len(status["devices"]) == 2
    assert len({device["node"] for device in status["devices"]}) == 2  # one actor on each node
    assert TOKEN not in json.dumps(status)


def test_without_the_token_401_and_nothing_else(room):
    for name in (None, "mallory"):
        for answer in (room.get("/v1/status", name), room.post("/v1/frames", {"model": "tiny"}, name)):
            assert answer.status_code == 401
            assert set(answer.json()) == {"detail"} and "token" in answer.json()["detail"]


@pytest.mark.parametrize("body,status,words", [
    (b"{not json", 400, "not JSON"),
    (b"[1, 2]", 400, "not an object"),
    ({"model": "tiny", "request": {"prompt": "x", "seed": 1, "steps": 10 ** 9, "guidance": 2.5, "width": 64,
                                   "height": 64}}, 422, "Steps 1000000000 is out of range"),
    ({"model": "tiny", "request": {"prompt": "x" * 1_000_000, "seed": 1, "steps": 4, "guidance": 2.5,
                                   "width": 64, "height": 64}}, 413, "bytes; a frame request is at most"),
    ({"model": "tiny", "request": {"prompt": "x", "seed": 1, "steps": 4, "guidance": 2.5, "width": 100,
                                   "height": 64}}, 422, "not a multiple of 8"),
    ({"model": "tiny", "request": {"prompt": "x", "seed": 1, "steps": 4, "guidance": 2.5, "width": 8192,
                                   "height": 8192}}, 422, "memory"),
    ({"model": "sd14", "request": {"prompt": "x", "seed": 1, "steps": 4, "guidance": 2.5, "width": 64,
                                   "height": 64}}, 404, "does not hold model 'sd14'"),
], ids=["junk", "array", "steps", "huge-prompt", "size", "too-big", "model"])
def test_bad_input_gets_a_4xx_sentence_and_the_service_keeps_serving(room, body, status, words):
    answer = room.post("/v1/frames", body, Accept="image/png")
    assert answer.status_code == status, answer.text
    sentence = answer.json()["detail"]
    assert words in sentence and "\n" not in sentence
    good = {"model": "tiny", "request": {"prompt": "a fair", "seed": 7, "steps": 2, "guidance": 2.5, "width": 64,
                                         "height": 64}}
    made = room.post("/v1/frames", good, Accept="image/png")
    assert made.status_code == 200 and made.content.startswith(b"\x89PNG")
    assert made.headers["X-TTLesson-Device"] == "cpu"


def test_tt_inference_server_requests_are_answered_as_it_answers(room):
    from PIL import Image

    answer = room.post("/v1/images/generations", {
        "prompt": "a fair at noon", "negative_prompt": "fog", "num_inference_steps": 3, "seed": 5,
        "guidance_scale": 2.5, "image_return_format": "PNG", "number_of_images": 1})
    assert answer.status_code == 200, answer.text
    image = Image.open(io.BytesIO(base64.b64decode(answer.json()["images"][0])))
    assert image.size == (128, 128)  # the tiny model's own size, as the request named none
    assert answer.json()["generation_time"] > 0
    refused = room.post("/v1/images/generations", {"prompt": "a fair", "image_return_format": "JPEG"})
    assert refused.status_code == 422 and "PNG" in refused.json()["detail"]


def _client_process(room: Room, name: str, out: Path, story: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([*ttlesson_command(), "render", str(story), "--model", "tiny", "--steps", str(STEPS),
                             "--size", str(SIZE), "--out", str(out), *extra],
                            env={**room.cluster.env, **room.client_env(name)}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _wait_for_pngs(out: Path, count: int, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while len(list((out / "frames").glob("frame_*.png"))) < count:
        assert process.poll() is None, process.communicate()[0]
        assert time.monotonic() < deadline, f"fewer than {count} frames in {timeout} s"
        time.sleep(0.1)


def _story_file(tmp: Path, name: str, count: int) -> Path:
    path = tmp / f"{name}.txt"
    path.write_text("\n".join(f"a fair, scene {i}" for i in range(count)) + "\n")
    return path


def test_a_killed_client_leaves_the_others_alone_and_resumes(room, tmp_path):
    killed = _client_process(room, "alice", tmp_path / "alice", _story_file(tmp_path, "alice", 40))
    _wait_for_pngs(tmp_path / "alice", 2, killed)
    other = threading.Thread(target=render_through, args=(room, "bob", board("bob", 4), tmp_path / "bob"))
    other.start()
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait()
    other.join(300)
    assert len(frames_of(tmp_path / "bob")) == 4  # untouched by alice's end
    kept = len(frames_of(tmp_path / "alice"))
    deadline = time.monotonic() + 30
    while room.status()["queue"]["total"] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert room.status()["queue"]["total"] == 0  # alice's waiting frames left the queue with her
    again = _client_process(room, "alice", tmp_path / "alice", _story_file(tmp_path, "alice", 12))
    output = again.communicate(timeout=300)[0]
    assert again.returncode == 0, output
    assert f"{min(kept, 12)} kept)" in output, output


def test_a_restarted_service_is_waited_for_then_the_render_finishes(room, tmp_path):
    client = _client_process(room, "alice", tmp_path / "alice", _story_file(tmp_path, "alice", 30))
    _wait_for_pngs(tmp_path / "alice", 2, client)
    room.service.stop()
    tokens = room.tmp / "tokens.txt"
    room.service = start_service(room.cluster, PORT, "--model", "tiny", "--tokens", str(tokens), "--threads", "1")
    output = client.communicate(timeout=300)[0]
    assert client.returncode == 0, output
    assert "is not answering" in output and "waiting for it" in output
    assert len(frames_of(tmp_path / "alice")) == 30


def test_the_prompt_box_and_the_film_versions_use_the_service(room, tmp_path):
    """What notebooks 06 and 07 keep loaded (the film versions' engine, the prompt box's) is the service's when
    TTLESSON_SERVER is set, and renders with it as with a local engine."""
    from ttlesson.backends import FrameRequest
    from ttlesson.backends.remote import RemoteBackend
    from ttlesson.notebook import widgets
    from ttlesson.notebook.widgets import loaded_backend

    with _env(room.client_env("bob")):
        engine = loaded_backend("tiny", "auto")
        assert isinstance(engine, RemoteBackend) and engine.precision == "float32"
        image = engine.generate(FrameRequest("a fair at dusk", seed=4, steps=STEPS, guidance=2.5, width=SIZE,
                                             height=SIZE))
        assert image.size == (SIZE, SIZE)
        result = render(board("bob", 2), tmp_path / "film", model="tiny", steps=STEPS, size=SIZE, backend=engine)
        widgets._LOADED.pop(widgets._loaded_key("tiny", "auto", None)).close()  # the kernel's cache, emptied
    assert len(result.made) == 2 and "render service" in result.device


BROWSER = """
import json, sys
from pathlib import Path
from playwright.sync_api import sync_playwright
from browser.browser_lab import CHROMIUM, CHROMIUM_FLAGS, NotebookRun

class Lab:
    url, token = sys.argv[1], sys.argv[2]

folder = Path(sys.argv[3])
with sync_playwright() as playwright:
    context = playwright.chromium.launch_persistent_context(
        str(folder / "profile"), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS,
        viewport={"width": 1280, "height": 900}, timeout=60_000)
    try:
        run = NotebookRun(context, Lab, "04_generate_frames", folder)
        run.open()
        run.run_all()
        text = run.text()
        run.screenshot()
    finally:
        context.close()
print("RESULT " + json.dumps(text))
"""


def test_a_learners_notebook_renders_through_the_service_unchanged(room, tmp_path):
    """Notebook 04 as committed, in JupyterLab in Chromium, with TTLESSON_SERVER and the token set before Jupyter
    starts: its frames come from the service (the progress line says so, the status counts them). Chromium is
    driven from a child process: this worker may hold the browser tests' own Playwright session."""
    from browser.browser_lab import CHROMIUM, NOTEBOOKS, JupyterLab, is_ci

    if importlib.util.find_spec("playwright") is None or not CHROMIUM.exists():
        if is_ci():
            pytest.fail("CI=true and Chromium (or Playwright) is missing for the browser check of the service")
        pytest.skip("needs Chromium and Playwright, as the browser tests do")
    before = sum(device["frames"] for device in room.status()["devices"])
    notebook = [path for path in NOTEBOOKS if path.stem == "04_generate_frames"]
    lab = JupyterLab(tmp_path / "lab", notebook, tmp_path / "jupyterlab.log", extra_env=room.client_env("bob"))
    lab.start()
    try:
        proc = subprocess.run([sys.executable, "-c", BROWSER, lab.url, lab.token, str(tmp_path)],
                              capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
                              env={**os.environ, "PYTHONPATH": str(Path(__file__).parent)})
    finally:
        lab.stop()
    line = next((line for line in proc.stdout.splitlines() if line.startswith("RESULT ")), None)
    assert line is not None, (proc.stdout[-2000:], proc.stderr[-3000:])
    text = json.loads(line[len("RESULT "):])
    assert f"of the render service at {room.url}" in text, text[-3000:]
    assert "Traceback" not in text and TOKEN not in text
    assert sum(device["frames"] for device in room.status()["devices"]) >= before + 10


def test_a_killed_node_costs_no_frame(room, tmp_path):
    story = board("alice", 12)
    result = {}

    def client():
        result["render"] = render_through(room, "alice", story, tmp_path / "alice")

    thread = threading.Thread(target=client)
    thread.start()
    deadline = time.monotonic() + 120
    while len(frames_of(tmp_path / "alice")) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    room.cluster.nodes[1].kill()  # its raylet and its workers, SIGKILL
    thread.join(300)
    assert "render" in result, "the render did not finish"
    frames = frames_of(tmp_path / "alice")
    assert sorted(frames) == list(range(12))
    book = json.loads((tmp_path / "alice" / "manifest.json").read_text())
    nodes = {record["device"].split(" node ")[1].split(",")[0] for record in book["frames"]}
    assert len(nodes) == 2  # both nodes made frames before one died
    assert {hashlib.sha256(data).hexdigest() for data in frames.values()} == \
        {record["sha256"] for record in book["frames"]}


def run_ray_script(script: str, tmp_path: Path, timeout: int, **env) -> dict:
    """Run ``script`` (one Ray cluster of its own, its temp folder argv[1]) in a child Python with the STAND-IN
    device layer importable; what it printed after ``RESULT ``, as JSON."""
    folder = short_folder()
    try:
        env = {**ray_environment(tmp_path), "PYTHONPATH": str(Path(__file__).parent), **env}
        proc = subprocess.run([sys.executable, "-c", script, str(folder)], capture_output=True, text=True, env=env,
                              timeout=timeout, stdin=subprocess.DEVNULL)
        line = next((line for line in proc.stdout.splitlines() if line.startswith("RESULT ")), None)
        assert line is not None, (proc.stdout[-2000:], proc.stderr[-3000:])
        return json.loads(line[len("RESULT "):])
    finally:
        shutil.rmtree(folder, ignore_errors=True)


TT_GROUPS = """
import asyncio, json, os, sys, tempfile
import ray
from ray.cluster_utils import Cluster
from ttlesson.backends import FrameRequest
from ttlesson.backends.protocol import FrameOrder
from ttlesson.serve.service import RenderService, ServiceOptions

FRAMES = {"sd14": FrameRequest("a fair at dusk", seed=3, steps=4, guidance=7.5, width=512, height=512),
          "sd35-large": FrameRequest("a pier at dawn", seed=9, steps=28, guidance=3.5, width=1024, height=1024)}

async def serve(models, warm_up_steps=None):
    service = RenderService(ServiceOptions(models=models, tt_runtime="standin_tt:standin_n300_cards_runtime",
                                           warm_up_steps=warm_up_steps))
    await service.start()
    try:
        made = {}
        for model in models:
            ticket = await service.submit("alice", FrameOrder(model, FRAMES[model]))
            while (event := await ticket.events.get())[0] not in ("done", "error"):
                pass
            kind, data = event
            made[model] = {"kind": kind, "png": data.pop("png", b"")[:4].hex(), **data}
        return {"made": made, "status": service.status(), "notices": service.notices, "failures": service.failures,
                "slots": [{"name": slot.name, "model": slot.model, "node": slot.node,
                           "cards": slot.info["visible_devices"], "cache": slot.info.get("kernel_cache"),
                           "warm": slot.info.get("warm_for")}
                          for slot in service.slots]}
    finally:
        await service.stop()  # in a Ray it did not start: kills its actors, so the cards go back for the next service

os.makedirs(os.path.join(tempfile.gettempdir(), "ray"), exist_ok=True)  # where Cluster writes its address
cluster = Cluster(initialize_head=True, head_node_args={
    "num_cpus": 1, "resources": {"TTNPU": 4}, "include_dashboard": False, "temp_dir": sys.argv[1]})
try:
    ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
    result = {"alone": asyncio.run(serve(("sd35-large",)))}
    cluster.add_node(num_cpus=0, resources={"TTNPU": 2})
    cluster.wait_for_nodes()
    result["both"] = asyncio.run(serve(("sd14", "sd35-large"), warm_up_steps=4))
    print("RESULT " + json.dumps(result))
finally:
    ray.shutdown()
    cluster.shutdown()
"""


def _cached_model_index(hub: Path, repo: str) -> None:
    """A Hugging Face cache holding ``repo``'s model_index.json, as after ttlesson fetch: a gated checkpoint
    already downloaded, so the SD 3.5 backend asks for no login."""
    commit = "0" * 40
    folder = hub / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(commit)
    (folder / "snapshots" / commit).mkdir(parents=True)
    (folder / "snapshots" / commit / "model_index.json").write_text("{}")


def test_sd35_gets_one_actor_over_all_of_a_nodes_cards(loopback, tmp_path):
    """Ray's TTNPU resource: a node of 4 cards gets one SD 3.5 Large group actor whose TT_VISIBLE_DEVICES is all
    four and whose backend makes an SD 3.5 frame over the mesh; beside SD 1.4, a 2-card node serves SD 1.4 one
    actor per card (TT_VISIBLE_DEVICES "0" and "1", each warmed into a kernel cache of its own) and the 4-card
    node the SD 3.5 group, no card in two actors. The cards, ttnn and tt_dit's
    pipeline are the STAND-IN device layer (tests/standin_tt.py: four cards play a T3K's 2×4 mesh); the gated
    checkpoint is a cached model_index.json."""
    _cached_model_index(tmp_path / "hub", "stabilityai/stable-diffusion-3.5-large")
    result = run_ray_script(TT_GROUPS, tmp_path, timeout=400, HF_HUB_CACHE=str(tmp_path / "hub"))
    group = "Tenstorrent wormhole_b0 mesh 2×4 (tt group: cards 0,1,2,3)"
    alone, both = result["alone"], result["both"]
    assert [(slot["name"], slot["cards"]) for slot in alone["slots"]] == [("tt-group#1", "0,1,2,3")], alone
    made = alone["made"]["sd35-large"]
    assert made["kind"] == "done" and made["png"] == b"\x89PNG".hex() and made["device"] == group, made
    assert [device["device"] for device in alone["status"]["devices"]] == [group]
    assert alone["status"]["models"]["sd35-large"]["devices"] == 1 and alone["notices"] == []
    # beside SD 1.4: the 2-card node one actor per card, the 4-card node the group; no card in two actors
    by_node: dict[str, list] = {}
    for slot in both["slots"]:
        by_node.setdefault(slot["node"], []).append((slot["model"], slot["cards"]))
    assert sorted(map(sorted, by_node.values())) == [[("sd14", "0"), ("sd14", "1")], [("sd35-large", "0,1,2,3")]]
    for model, made in both["made"].items():
        assert made["kind"] == "done" and made["png"] == b"\x89PNG".hex(), (model, made)
    assert both["made"]["sd35-large"]["device"] == group and "tt group" not in both["made"]["sd14"]["device"]
    assert {model: entry["devices"] for model, entry in both["status"]["models"].items()} == \
        {"sd14": 2, "sd35-large": 1}
    # each actor warmed before serving (--warm-up 4) into a kernel cache of its own, keyed by its cards
    assert sorted(Path(slot["cache"]).name for slot in both["slots"]) == ["card-0", "card-0,1,2,3", "card-1"]
    assert sorted(slot["warm"] for slot in both["slots"] if slot["model"] == "sd14") == ["4 steps, 512x512"] * 2
    assert both["notices"] == [] and both["failures"] == []
