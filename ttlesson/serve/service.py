"""The render service's engine room: Ray actors that own the devices, and the fair queue that feeds them.

Reading ``RenderService`` top to bottom is the algorithm:

1. join the Ray cluster (``address``), or start one on this host;
2. on every node, one ``FrameMaker`` actor per device: a Tenstorrent card (``TTNPU``), a GPU, or CPU slots of
   ``threads`` cores; each loads the model once. Ray's own restarts and retries are off (a restart is minutes of
   loading and compiling): a lost frame is made again by another actor instead;
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

from ..errors import TTLessonError
from .fairness import FairQueue
from .protocol import FrameOrder, RequestError

MAX_ATTEMPTS = 3  # a frame whose device dies under it this many times is given up (it may be what kills them)
NODE_WATCH_SECONDS = 2.0


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


@dataclass(eq=False)
class Slot:
    """One device actor: where it runs and what it is doing."""

    name: str
    kind: str
    model: str
    node: str
    host: str
    actor: object = None
    info: dict | None = None
    ticket: Ticket | None = None
    dead: bool = False
    frames: int = 0

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
        self._numbers = itertools.count(1)
        self._changed: asyncio.Condition | None = None
        self._tasks: set[asyncio.Task] = set()
        self._started_ray = False
        self._nodes: set[str] = set()  # nodes given actors (or tried)
        self.started = time.time()

    # --- 1. and 2.: the cluster and the actors ---------------------------------------------------------------

    async def start(self) -> None:
        self._changed = asyncio.Condition()
        self._join_cluster()  # in the main thread, where Ray sets its signal handlers; nothing else runs yet
        await self._place_actors()
        if not self.live_slots():
            why = self.failures[-1] if self.failures else "the cluster has no CPU, GPU or TTNPU to give"
            raise TTLessonError(f"No device of the cluster could load {', '.join(self.options.models)}: {why}")
        self._spawn(self._watch_nodes())

    def _join_cluster(self) -> None:
        import ray

        if ray.is_initialized():  # the caller joined a cluster already (embedding the service, the tests)
            return
        try:
            ray.init(address=self.options.address or "local", include_dashboard=False, log_to_driver=False,
                     logging_level="WARNING", configure_logging=False)
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
        new = [slot for node in fresh for slot in self._slots_for(node)]
        for slot in new:
            slot.actor = self._actor(slot)
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

    def _slots_for(self, node: dict) -> list[Slot]:
        resources = node.get("Resources", {})
        cards, gpus, cores = int(resources.get("TTNPU", 0)), int(resources.get("GPU", 0)), int(resources.get("CPU", 0))
        if cards:
            kind, count = "tt", cards
        elif gpus:
            kind, count = "gpu", gpus
        else:
            kind = "cpu"
            count = self.options.cpu_actors or max(1, cores // max(1, self.options.threads))
        host = node.get("NodeManagerHostname") or node.get("NodeManagerAddress", "")
        first = len(self.slots) + 1
        models = self.options.models
        return [Slot(f"{kind}#{first + n}", kind, models[(first + n - 1) % len(models)], node["NodeID"], host)
                for n in range(count)]

    def _actor(self, slot: Slot):
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from .actor import FrameMaker

        need = {"tt": {"resources": {"TTNPU": 1}, "num_cpus": 0}, "gpu": {"num_gpus": 1, "num_cpus": 0},
                "cpu": {"num_cpus": self.options.threads}}[slot.kind]
        remote = ray.remote(FrameMaker).options(
            **need, max_restarts=0, max_task_retries=0, max_concurrency=4,
            scheduling_strategy=NodeAffinitySchedulingStrategy(slot.node, soft=False))
        return remote.remote(slot.model, slot.kind, slot.name, self.options.threads if slot.kind == "cpu" else None,
                             self.options.precision, self.options.tt_runtime)

    async def _forget_dead_nodes(self, alive: set[str]) -> None:
        """Slots on a node Ray no longer sees are dead: their frames (if any) fail over as their actor's do."""
        gone = [slot for slot in self.live_slots() if slot.node not in alive]
        if gone:
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
        async with self._changed:
            self.queue.put(client, ticket)
            self._changed.notify_all()
        return ticket

    async def count_tokens(self, model: str, texts: list[str]) -> list[int]:
        slot = next((slot for slot in self.live_slots() if slot.model == model), None)
        if slot is None:
            raise RequestError(f"This service does not hold model {model!r}.", 404)
        return await slot.actor.count_tokens.remote(texts)

    def cancel(self, ticket: Ticket) -> None:
        """The client went away: its frame leaves the queue (a frame on a device finishes, unseen)."""
        ticket.gone = True
        self.queue.cancel(ticket.client, ticket)

    def position(self, ticket: Ticket) -> int | None:
        return self.queue.position(ticket.client, ticket)

    async def _serve(self, slot: Slot) -> None:
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
        for task in list(self._tasks):
            task.cancel()
        if self._started_ray:
            import ray

            await asyncio.to_thread(ray.shutdown)

    def _spawn(self, coroutine) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


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
