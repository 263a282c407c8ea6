"""Frames per second through the render service (``ttlesson serve``) against the number of device actors, and
the service's overhead per frame against a local render of the same frames, on the offline tiny model.

Each actor is one CPU slot with one torch thread; the local render runs in this process with one thread too, so
both make the same frames (byte-identical) with the same arithmetic. For each actor count: start the service
on a local Ray cluster (loopback port), render a warm-up storyboard through it, then time ``--rounds`` client
renders of ``--frames`` frames (frames and manifest written here), with one actor taking turns with a local
render of the same frames; then stop the service. Prints medians, and optionally saves JSON.

Two measures per round: the whole render (start to finish: settling, the folder, the manifest and the last frame's
tail included), and the steady state, the rate after the first frame each actor makes (``(frames - actors) /
(last finish - the actors-th finish)``: with two actors the first two frames finish together), which is what a long
render, a walk of hundreds of frames, sees. The goals of
the render service (2 actors at least 1.8 times one actor's frames per second; at most 5% overhead per frame
against a local render) are judged on the steady state; both are printed.

For scale, the machine's own ceiling at the same minutes: two plain local renders at once in two processes (one
thread each, no Ray, no service), against one alone. On two cores that is what two actors could reach at best.

    python benchmarks/serve_throughput.py [--actors 1 2] [--frames 16] [--rounds 5] [--json FILE]

Ray binds every interface of the machine it runs on; run this where that is fine (or in a private network
namespace: ``unshare -n sh -c 'ip link set lo up; python benchmarks/serve_throughput.py'``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PORT = 8479

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--actors", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--frames", type=int, default=16, help="frames per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", default=None, metavar="FILE")
    parser.add_argument("--local-renderer", metavar="OUT", help=argparse.SUPPRESS)  # one of _two_local_renders
    args = parser.parse_args()
    if args.local_renderer:
        return _local_renderer(args.frames, args.local_renderer)

    from ttlesson import render

    results: dict = {"frames": args.frames, "rounds": args.rounds, "model": "tiny", "threads_per_actor": 1,
                     "cpu": _cpu(), "local_seconds": [], "served_seconds": {}, "local_steady": [], "served_steady": {}}
    with tempfile.TemporaryDirectory(prefix="ttlesson-serve-bench-") as scratch:
        scratch = Path(scratch)
        backend = _tiny_backend()
        url = f"http://127.0.0.1:{PORT}"
        timed = _board("timed", args.frames, 0)

        def local(number: int) -> tuple[float, float]:
            backend._prompts.clear()  # the service's actor encodes each prompt once per frame too
            return _timed_render(timed, scratch / f"local-{number}", 1, backend=backend, server="")

        def served(actors: int, number: int) -> tuple[float, float]:
            return _timed_render(timed, scratch / f"served-{actors}-{number}", actors, server=url)

        local(-1)  # warm-up
        for actors in args.actors:
            service = _start_service(actors, scratch / f"serve-{actors}.log")
            try:
                render(_board("warm", 2 * actors, 1000), scratch / f"warm-{actors}", model="tiny", server=url)
                rounds = results["served_seconds"][actors] = []
                steady = results["served_steady"][actors] = []
                for number in range(args.rounds):  # local and served in turn, so drift hits both alike
                    if actors == 1:
                        whole, per_frame = local(len(results["local_seconds"]))
                        results["local_seconds"].append(whole)
                        results["local_steady"].append(per_frame)
                    whole, per_frame = served(actors, number)
                    rounds.append(whole)
                    steady.append(per_frame)
            finally:
                service.terminate()
                service.wait(60)
        backend.close()
        if 2 in args.actors:
            results["two_local_at_once_steady"] = _two_local_renders(args.frames, args.rounds, scratch)
        reference = sorted((scratch / "local-0" / "frames").glob("*.png"))
        results["same_bytes_as_local"] = all(
            (folder / "frames" / path.name).read_bytes() == path.read_bytes()
            for folder in scratch.glob("served-*") for path in reference)

    for measure, local_key, served_key, per in (("whole render", "local_seconds", "served_seconds", args.frames),
                                                ("steady state", "local_steady", "served_steady", 1)):
        per_frame = {actors: statistics.median(times) / per for actors, times in results[served_key].items()}
        print(f"{measure}, median of {args.rounds} rounds of {args.frames} frames:")
        if results[local_key]:
            local_frame = statistics.median(results[local_key]) / per
            print(f"  local render, 1 thread: {local_frame:.3f} s/frame ({1 / local_frame:.2f} frames/s)")
        for actors, seconds in per_frame.items():
            print(f"  service, {actors} actor(s): {seconds:.3f} s/frame ({1 / seconds:.2f} frames/s)")
        suffix = "" if measure == "whole render" else "_steady"
        if 1 in per_frame and results[local_key]:
            results["overhead_per_frame" + suffix] = per_frame[1] / local_frame - 1
            print(f"  service overhead per frame (1 actor vs local): "
                  f"{100 * results['overhead_per_frame' + suffix]:+.1f}%")
        if 1 in per_frame and 2 in per_frame:
            results["speedup_2_vs_1" + suffix] = per_frame[1] / per_frame[2]
            print(f"  2 actors vs 1: {results['speedup_2_vs_1' + suffix]:.2f}x frames/s")
    if results.get("two_local_at_once_steady") and results["local_steady"]:
        alone = statistics.median(results["local_steady"])
        together = statistics.median(results["two_local_at_once_steady"])
        results["machine_2_vs_1_steady"] = 2 * alone / together
        print(f"the machine's own ceiling, steady state: two local renders at once {together:.3f} s/frame each, "
              f"{results['machine_2_vs_1_steady']:.2f}x one alone")
    print(f"every served frame byte-identical to the local one: {results['same_bytes_as_local']}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


def _board(name: str, count: int, first_seed: int):
    from ttlesson.storyboard import Frame, Storyboard

    return Storyboard([Frame(f"a fair, scene {i}", seed=first_seed + i) for i in range(count)], name)


def _tiny_backend():
    """The tiny model on the CPU with one torch thread, loaded: an actor's arithmetic, in this process."""
    import torch

    from ttlesson import models
    from ttlesson.backends.torch import TorchBackend

    torch.set_num_threads(1)
    backend = TorchBackend(models.resolve("tiny"), device="cpu", precision="float32")
    backend.load()
    return backend


def _timed_render(board, out: Path, parallel: int, **how) -> tuple[float, float]:
    """(the whole render's seconds, the steady state's seconds per frame: after each of ``parallel`` makers' first
    frame)."""
    from ttlesson import render
    from ttlesson.progress import FrameDone

    finished: list[float] = []

    def on_event(event) -> None:
        if isinstance(event, FrameDone):
            finished.append(time.perf_counter())

    started = time.perf_counter()
    render(board, out, model="tiny", on_event=on_event, **how)
    whole = time.perf_counter() - started
    return whole, (finished[-1] - finished[parallel - 1]) / (len(finished) - parallel)


def _local_renderer(frames: int, out: str) -> None:
    """One of the two renders of the machine's ceiling: load the model, then one timed render per line read from
    stdin (so both processes start each render together), printing its steady state's seconds per frame."""
    backend = _tiny_backend()
    timed = _board("timed", frames, 0)
    print("ready", flush=True)
    for number, _ in enumerate(sys.stdin):
        backend._prompts.clear()
        _, steady = _timed_render(timed, Path(f"{out}-{number}"), 1, backend=backend, server="")
        print(json.dumps(steady), flush=True)


def _two_local_renders(frames: int, rounds: int, scratch: Path) -> list[float]:
    """Each round's steady-state seconds per frame of two local renders made at the same time (their mean)."""
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    children = [subprocess.Popen([sys.executable, __file__, "--frames", str(frames), "--local-renderer",
                                  str(scratch / f"alone-{n}")],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env) for n in (0, 1)]
    try:
        for child in children:
            assert child.stdout.readline().strip() == "ready"
        seconds = []
        for _ in range(rounds):
            for child in children:
                child.stdin.write("go\n")
                child.stdin.flush()
            seconds.append(statistics.mean(float(child.stdout.readline()) for child in children))
        return seconds
    finally:
        for child in children:
            child.stdin.close()
            child.wait(60)


def _start_service(actors: int, log: Path) -> subprocess.Popen:
    script = Path(sys.executable).with_name("ttlesson")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "OMP_WAIT_POLICY": "PASSIVE"}
    service = subprocess.Popen([str(script), "serve", "--model", "tiny", "--port", str(PORT), "--threads", "1",
                                "--cpu-actors", str(actors)], stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 180
    while "listening at" not in log.read_text():
        if service.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"ttlesson serve did not start:\n{log.read_text()}")
        time.sleep(0.2)
    return service


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip() + f", {os.cpu_count()} cores"
    except OSError:
        pass
    return f"{os.cpu_count()} cores"


if __name__ == "__main__":
    main()
