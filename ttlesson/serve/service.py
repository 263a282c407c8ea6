"""The render service's engine room: Ray actors that own the devices, and the fair queue that feeds them.

Reading ``RenderService`` top to bottom is the algorithm:

1. join the Ray cluster (``address``), or start one on this host;
2. on every node, one ``FrameMaker`` actor per device: a Tenstorrent card (``TTNPU``), a GPU, or CPU slots of
   ``threads`` cores; SD 3.5 Large runs over a whole system mesh instead, so its actor on a Tenstorrent node
   holds all of that node's cards (a *group*), and ``deal_tt_nodes`` says which Tenstorrent nodes serve it and
   which serve the per-card models. Each actor loads its model once. Ray's own restarts and retries are off (a
   restart is minutes of loading and compiling): a lost frame is made again by another actor instead;
3. each actor takes the next frame from the fair queue (clients take turns, ``fairness``), streams its steps
   back to the frame's client and ends with the PNG;
4. a frame whose actor or node died goes back to the front of its client's line for another actor; nodes that
   join later get actors of their own.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from dataclasses import dataclass, field
from typing import Any

from ..backends.protocol import FrameOrder, RequestError
from ..errors import TTLessonError
from ..tenstorrent.presets import SD35_SYSTEMS
from .fairness import FairQueue

MAX_ATTEMPTS = 3  # a frame whose device dies under it this many times is given up (it may be what kills them)
NODE_WATCH_SECONDS = 2.0
# The fewest cards (Ray's TTNPU: PCIe devices) of a system tt_dit has an SD 3.5 preset for: a T3K's 4 N300 cards,
# a 4-chip Blackhole QuietBox. The actor's backend then checks the system itself (plan.sd35_layout).
SD35_MIN_CARDS = 4
GROUP, PER_CARD = "SD 3.5 group", "per-card models"  # what a Tenstorrent node serves


@dataclass(frozen=True)
class ServiceOptions:
    models: tuple[str, ...] = ("tiny",)
    address: str | None = None  # a Ray cluster to join ("auto", "HOST:PORT"); None: start one on this host
    threads: int = 1  # torch threads per CPU actor (and the cores it reserves)
    cpu_actors: int | None = None  # per node without accelerators; None: its cores // threads
    precision: str = "auto"
    per_client: int | None = None  # frames on devices at once per client; None: no cap (clients still take turns)
    tt_runtime: str | None = None  # "module:function" giving the tt backend's Runtime (tests: a stand-in device layer)
    warm_up_steps: int | None = None  # each actor compiles and captures for frames of this many steps before serving
    warm_up_size: str | None = None  # … at this size (None: the model's own)


@dataclass(eq=False)
class Ticket:
    """One frame a client asked for, from the queue to its PNG; ``events`` carries what the client is told."""

    client: str
    order: FrameOrder
    number: int
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    attempts: int = 0
    gone: bool = False  # the client went away: a frame on a device finishes, its PNG is dropped
    finished: bool = False


@dataclass(frozen=True)
class TTNode:
    """A node with Tenstorrent cards, as the service dealt it: its Ray node id, host, cards and what it serves
    (``GROUP``, ``PER_CARD``, or None: none of the models asked for fits it)."""

    node: str
    host: str
    cards: int
    serves: str | None = None


@dataclass(eq=False)
class Slot:
    """One device actor: where it runs and what it is doing."""

    name: str
    kind: str
    model: str
    node: str
    host: str
    cards: int = 1  # Tenstorrent cards the actor holds: all of its node's for an SD 3.5 group
    actor: Any = None  # a Ray actor handle: its methods are made at run time
    info: dict | None = None
    ticket: Ticket | None = None
    dead: bool = False
    frames: int = 0

    @property
    def is_group(self) -> bool:
        return self.cards > 1

    def public(self) -> dict:
        info = self.info or {}
        return {"actor": self.name, "device": info.get("device", self.kind), "host": self.host,
                "node": self.node[:12]}


class RenderService:
    def __init__(self, options: ServiceOptions):
        self.options = options
        self.queue: FairQueue[Ticket] = FairQueue(options.per_client)
        self.slots: list[Slot] = []
        self.failures: list[str] = []  # why actors could not start, newest last
        self.notices: list[str] = []  # what the service says at start besides its devices
        self.tt_nodes: dict[str, TTNode] = {}  # by Ray node id
        self._numbers = itertools.count(1)
        self._slot_numbers = itertools.count(1)
        self._changed: asyncio.Condition | None = None
        self._tasks: set[asyncio.Task] = set()
        self._started_ray = False
        self._nodes: set[str] = set()  # nodes given actors (or tried)
        self._actors: list = []  # every actor started, loaded or not: stop() frees their devices
        self.started = time.time()

    # --- 1. and 2.: the cluster and the actors ---------------------------------------------------------------

    async def start(self) -> None:
        self._changed = asyncio.Condition()
        self._join_cluster()  # in the main thread, where Ray sets its signal handlers; nothing else runs yet
        await self._place_actors()
        notice = sd35_notice(list(self.tt_nodes.values()), self.options.models)
        if notice:
            self.notices.append(notice)
        if not self.live_slots():
            reasons = self.failures + self.notices
            why = reasons[-1] if reasons else "the cluster has no CPU, GPU or TTNPU to give"
            raise TTLessonError(f"No device of the cluster could load {', '.join(self.options.models)}: {why}")
        self._spawn(self._watch_nodes())

    def _join_cluster(self) -> None:
        import ray

        if ray.is_initialized():  # the caller joined a cluster already (embedding the service, the tests)
            return
        try:  # logging_level: Ray takes a level name (its own default is "info"), though its annotation says int
            ray.init(address=self.options.address or "local", include_dashboard=False, log_to_driver=False,
                     logging_level="WARNING", configure_logging=False)  # type: ignore[arg-type]
        except (ConnectionError, RuntimeError) as err:
            raise TTLessonError(_cluster_error(self.options.address, err)) from err
        self._started_ray = True

    async def _place_actors(self) -> None:
        import ray

        nodes = await asyncio.to_thread(ray.nodes)
        alive = {node["NodeID"] for node in nodes if node.get("Alive")}
        await self._forget_dead_nodes(alive)
        fresh = [node for node in nodes if node["NodeID"] in alive - self._nodes]
        self._nodes |= alive
        new = self._slots_for_nodes(fresh)
        for slot in new:
            slot.actor = self._actor(slot)
            self._actors.append(slot.actor)
        for slot in new:
            try:
                slot.info = await slot.actor.describe.remote()
                if self.options.warm_up_steps:  # all actors at once: each compiles on its own card
                    slot.info = await slot.actor.warm_up.remote(self.options.warm_up_steps, self.options.warm_up_size)
            except Exception as err:  # the model did not load there: the others serve
                self.failures.append(f"{slot.name} on {slot.host}: {_first_line(err)}")
                continue
            self.slots.append(slot)
            self._spawn(self._serve(slot))

    def _slots_for_nodes(self, nodes: list[dict]) -> list[Slot]:
        """The actors to start on ``nodes`` (as ``ray.nodes()`` lists them), Tenstorrent nodes dealt first."""
        dealt = deal_tt_nodes([TTNode(node["NodeID"], _host(node), _cards(node)) for node in nodes if _cards(node)],
                              self.options.models, *self._tt_nodes_serving())
        self.tt_nodes.update((node.node, node) for node in dealt)
        return [slot for node in nodes for slot in self._slots_for(node)]

    def _slots_for(self, node: dict) -> list[Slot]:
        resources = node.get("Resources", {})
        cards, gpus, cores = _cards(node), int(resources.get("GPU", 0)), int(resources.get("CPU", 0))
        if cards:
            serves = self.tt_nodes[node["NodeID"]].serves
            if serves == GROUP:
                return [self._slot("tt", mesh_models(self.options.models), node, cards)]
            kind, count, models = "tt", cards if serves == PER_CARD else 0, per_card_models(self.options.models)
        elif gpus:
            kind, count, models = "gpu", gpus, self.options.models
        else:
            kind, models = "cpu", self.options.models
            count = self.options.cpu_actors or max(1, cores // max(1, self.options.threads))
        return [self._slot(kind, models, node) for _ in range(count)]

    def _slot(self, kind: str, models: tuple[str, ...], node: dict, cards: int = 1) -> Slot:
        """The next slot, named by its number over the service's life; models are dealt to slots in turn."""
        number = next(self._slot_numbers)
        name = f"{'tt-group' if cards > 1 else kind}#{number}"
        return Slot(name, kind, models[(number - 1) % len(models)], node["NodeID"], _host(node), cards)

    def _tt_nodes_serving(self) -> tuple[int, int]:
        """How many nodes serve an SD 3.5 group and how many the per-card models, counting live actors."""
        tt = [slot for slot in self.live_slots() if slot.kind == "tt"]
        return len({slot.node for slot in tt if slot.is_group}), len({slot.node for slot in tt if not slot.is_group})

    def _actor(self, slot: Slot):
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from .actor import FrameMaker

        needs: dict[str, dict[str, Any]] = {"tt": {"resources": {"TTNPU": slot.cards}, "num_cpus": 0},
                                            "gpu": {"num_gpus": 1, "num_cpus": 0},
                                            "cpu": {"num_cpus": self.options.threads}}
        need = needs[slot.kind]
        remote = ray.remote(FrameMaker).options(
            **need, max_restarts=0, max_task_retries=0, max_concurrency=4,
            scheduling_strategy=NodeAffinitySchedulingStrategy(slot.node, soft=False))
        return remote.remote(slot.model, slot.kind, slot.name, self.options.threads if slot.kind == "cpu" else None,
                             self.options.precision, self.options.tt_runtime,
                             devices="all" if slot.is_group else 1)

    async def _forget_dead_nodes(self, alive: set[str]) -> None:
        """Slots on a node Ray no longer sees are dead: their frames (if any) fail over as their actor's do."""
        gone = [slot for slot in self.live_slots() if slot.node not in alive]
        if gone:
            assert self._changed is not None  # made by start
            async with self._changed:
                for slot in gone:
                    slot.dead = True
                    self.failures.append(f"{slot.name} on {slot.host}: its node left the cluster")
                self._changed.notify_all()

    async def _watch_nodes(self) -> None:
        while True:
            await asyncio.sleep(NODE_WATCH_SECONDS)
            try:
                await self._place_actors()
            except Exception as err:  # a cluster hiccup: try again at the next look
                self.failures.append(f"watching the nodes: {_first_line(err)}")

    # --- 3. and 4.: frames ------------------------------------------------------------------------------------

    async def submit(self, client: str, order: FrameOrder) -> Ticket:
        """Queue a frame for ``client``; a model the service does not hold is refused (404)."""
        held = self.models()
        if order.model not in held:
            offer = ", ".join(sorted(held)) or "none (no device is up)"
            raise RequestError(f"This service does not hold model {order.model!r}; it holds {offer}: render with "
                               "one of those, or start the service with --model " + order.model + ".", 404)
        ticket = Ticket(client, order, next(self._numbers))
        assert self._changed is not None  # made by start
        async with self._changed:
            self.queue.put(client, ticket)
            self._changed.notify_all()
        return ticket

    async def count_tokens(self, model: str, texts: list[str]) -> list[int]:
        slot = next((slot for slot in self.live_slots() if slot.model == model), None)
        if slot is None:
            raise RequestError(f"This service does not hold model {model!r}.", 404)
        counts = await slot.actor.count_tokens.remote(texts)
        if counts is None:
            raise RequestError(f"This service's {model} cannot count its text encoder's tokens.", 501)
        return counts

    def cancel(self, ticket: Ticket) -> None:
        """The client went away: its frame leaves the queue (a frame on a device finishes, unseen)."""
        ticket.gone = True
        self.queue.cancel(ticket.client, ticket)

    def position(self, ticket: Ticket) -> int | None:
        return self.queue.position(ticket.client, ticket)

    async def _serve(self, slot: Slot) -> None:
        assert self._changed is not None  # made by start
        while not slot.dead:
            async with self._changed:
                while (taken := self.queue.take(lambda ticket: ticket.order.model == slot.model)) is None:
                    if slot.dead:
                        return
                    await self._changed.wait()
            _, ticket = taken
            slot.ticket = ticket
            try:
                await self._make(slot, ticket)
            finally:
                slot.ticket = None
                async with self._changed:
                    self.queue.done(ticket.client)
                    self._changed.notify_all()

    async def _make(self, slot: Slot, ticket: Ticket) -> None:
        import ray

        ticket.attempts += 1
        ticket.events.put_nowait(("started", slot.public()))
        try:
            async for ref in slot.actor.make.remote(ticket.order.request):
                event = await ref
                if event[0] == "step":
                    ticket.events.put_nowait(("step", {"step": event[1], "total": event[2]}))
                elif event[0] == "done":
                    slot.frames += 1
                    ticket.finished = True
                    ticket.events.put_nowait(("done", {"png": event[1], "seconds": event[2], **slot.public()}))
                else:
                    status = 422 if event[0] == "refused" else 500
                    ticket.finished = True
                    ticket.events.put_nowait(("error", {"status": status, "message": event[1]}))
        except (ray.exceptions.RayActorError, ray.exceptions.ObjectLostError) as err:
            slot.dead = True
            self.failures.append(f"{slot.name} on {slot.host} died making frame {ticket.number}: {_first_line(err)}")
            self._retry_elsewhere(slot, ticket)

    def _retry_elsewhere(self, slot: Slot, ticket: Ticket) -> None:
        if ticket.gone or ticket.finished:
            return
        if ticket.attempts >= MAX_ATTEMPTS or not any(other.model == slot.model for other in self.live_slots()):
            ticket.finished = True
            ticket.events.put_nowait(("error", {"status": 503, "message": (
                f"The frame was lost with its device {ticket.attempts} time(s) ({slot.name} on {slot.host} last) "
                "and no other device is left to make it; send it again when the service has devices.")}))
            return
        ticket.events.put_nowait(("lost", {"actor": slot.name, "host": slot.host}))
        self.queue.put(ticket.client, ticket, front=True)

    # --- what the status shows ------------------------------------------------------------------------------

    def live_slots(self) -> list[Slot]:
        return [slot for slot in self.slots if not slot.dead]

    def models(self) -> dict[str, dict]:
        """Each model held by a live device: its backend, precision, size defaults and how many devices."""
        from ..models import resolve

        held: dict[str, dict] = {}
        for slot in self.live_slots():
            entry = held.get(slot.model)
            if entry is None:
                assert slot.info is not None  # a slot joins self.slots once its actor described itself
                spec = resolve(slot.model)
                entry = held[slot.model] = {
                    "backend": slot.info["backend"], "precision": slot.info["precision"], "devices": 0,
                    "max_prompt_tokens": slot.info["max_prompt_tokens"], "width": spec.width,
                    "height": spec.height, "steps": spec.steps, "guidance": spec.guidance}
            entry["devices"] += 1
        return held

    def status(self, client: str | None = None) -> dict:
        waiting = self.queue.waiting()
        return {
            "service": "ttlesson", "since": round(self.started), "you": client, "per_client": self.options.per_client,
            "models": self.models(),
            "devices": [{**slot.public(), "model": slot.model, "frames": slot.frames,
                         "busy_for": slot.ticket.client if slot.ticket else None} for slot in self.live_slots()],
            "lost_devices": [slot.name for slot in self.slots if slot.dead],
            "queue": {"waiting": waiting, "in_flight": dict(self.queue.in_flight), "total": sum(waiting.values())},
        }

    async def stop(self) -> None:
        """Stop serving and free the devices: Ray shut down where the service started it, else (a Ray the caller
        runs) every actor it started killed, so no card stays held."""
        import ray

        for task in list(self._tasks):
            task.cancel()
        if self._started_ray:
            await asyncio.to_thread(ray.shutdown)
            return
        for actor in self._actors:
            ray.kill(actor, no_restart=True)

    def _spawn(self, coroutine) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


# --- which Tenstorrent nodes serve SD 3.5 Large ---------------------------------------------------------------

def mesh_models(models: tuple[str, ...]) -> tuple[str, ...]:
    """The models tt-metal runs over a whole system mesh (SD 3.5 Large: the sd3 family, as ``backends.tt`` chooses
    its backend), which a Tenstorrent node serves with one actor over all its cards."""
    from ..models import resolve

    def over_a_mesh(model: str) -> bool:
        try:
            return resolve(model).family == "sd3"
        except TTLessonError:  # not a model: its actor says so when it fails to load
            return False
    return tuple(model for model in models if over_a_mesh(model))


def per_card_models(models: tuple[str, ...]) -> tuple[str, ...]:
    """The models a Tenstorrent node serves with one actor per card: all but ``mesh_models``."""
    meshes = mesh_models(models)
    return tuple(model for model in models if model not in meshes)


def deal_tt_nodes(nodes: list[TTNode], models: tuple[str, ...], groups: int = 0, per_card: int = 0) -> list[TTNode]:
    """``nodes`` with what each serves; ``groups`` and ``per_card``: how many nodes serve each already.

    Smallest nodes first (ties: by node id), so that nodes too small for SD 3.5's mesh (fewer than
    ``SD35_MIN_CARDS`` cards) go to the per-card models before a larger node is weighed. A node that can hold the
    mesh goes to whichever of the two fewer nodes serve, on a tie to the one named first in ``models``; when only
    one of them is asked for, every node that fits it serves it."""
    dealt = []
    for node in sorted(nodes, key=lambda node: (node.cards, node.node)):
        serves = _what_a_tt_node_serves(node.cards, models, groups, per_card)
        groups, per_card = groups + (serves == GROUP), per_card + (serves == PER_CARD)
        dealt.append(TTNode(node.node, node.host, node.cards, serves))
    return dealt


def _what_a_tt_node_serves(cards: int, models: tuple[str, ...], groups: int, per_card: int) -> str | None:
    meshes, others = mesh_models(models), per_card_models(models)
    if not meshes or cards < SD35_MIN_CARDS:
        return PER_CARD if others else None
    if not others or groups < per_card:
        return GROUP
    if groups > per_card:
        return PER_CARD
    return GROUP if models.index(meshes[0]) < models.index(others[0]) else PER_CARD


def sd35_notice(nodes: list[TTNode], models: tuple[str, ...]) -> str | None:
    """One sentence when SD 3.5 Large is asked for and no Tenstorrent node was dealt to it: each node and its
    cards, what the mesh needs, and what to do; None otherwise."""
    meshes = mesh_models(models)
    if not meshes or not nodes or any(node.serves == GROUP for node in nodes):
        return None
    listed = "; ".join(f"node {node.node[:12]} on {node.host}: {node.cards} card{'s' if node.cards != 1 else ''}"
                       for node in nodes)
    others = ", ".join(per_card_models(models))
    if any(node.cards >= SD35_MIN_CARDS for node in nodes):
        instead = (f"the node that could hold it serves {others}, named before it: give --model {meshes[0]} first to "
                   "serve it there")
    elif others:
        instead = f"these cards serve {others} instead"
    else:
        instead = "run it on such a system, or serve --model sd14 on these cards"
    return (f"SD 3.5 Large has no Tenstorrent node here ({listed}): tt_dit runs it over all the cards of one node, "
            f"which must be {SD35_SYSTEMS}, {SD35_MIN_CARDS} cards or more; {instead}.")


def _cards(node: dict) -> int:
    return int(node.get("Resources", {}).get("TTNPU", 0))


def _host(node: dict) -> str:
    return node.get("NodeManagerHostname") or node.get("NodeManagerAddress", "")


def _cluster_error(address: str | None, err: Exception) -> str:
    text = _first_line(err)
    if "version mismatch" in str(err).lower():
        return ("The Ray cluster runs another Ray or Python version than this one; install the same Ray and "
                f"Python on every host (ray start and ttlesson serve alike). Ray said: {text}")
    where = f"the Ray cluster at {address}" if address else "a Ray cluster on this host"
    return f"Could not join {where} ({text}); start it with ray start --head, or leave --address out."


def _first_line(err: BaseException) -> str:
    """The sentence that says why: for an actor that died of an exception, that exception's own message (Ray
    wraps it in its traceback), else the error's first line."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    raised = [match.group(1) for line in lines if (match := re.match(r"^[\w.]*(?:Error|Exception): (.+)$", line))]
    if raised:
        return raised[-1][:300]
    return lines[0][:300] if lines else type(err).__name__
