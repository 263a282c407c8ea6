"""Frames per second through the render service (``ttlesson serve``) against the number of device actors, and
the service's overhead per frame against a local render of the same frames, on the offline tiny model.

Each actor is one CPU slot with one torch thread; the local render runs in this process with one thread too, so
both make the same frames (byte-identical) with the same arithmetic. For each actor count: start the service
on a local Ray cluster (loopback port), render a warm-up storyboard through it, then time ``--rounds`` client
renders of ``--frames`` frames (frames and manifest written here), with one actor taking turns with a local
render of the same frames; then stop the service. Prints medians, and optionally saves JSON.

    python benchmarks/serve_throughput.py [--actors 1 2] [--frames 8] [--rounds 5] [--json FILE]

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
    parser.add_argument("--frames", type=int, default=8, help="frames per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", default=None, metavar="FILE")
    args = parser.parse_args()

    import torch

    from ttlesson import models, render
    from ttlesson.backends.torch import TorchBackend
    from ttlesson.storyboard import Frame, Storyboard

    def board(name: str, count: int, first_seed: int) -> Storyboard:
        return Storyboard([Frame(f"a fair, scene {i}", seed=first_seed + i) for i in range(count)], name)

    torch.set_num_threads(1)
    results: dict = {"frames": args.frames, "rounds": args.rounds, "model": "tiny", "threads_per_actor": 1,
                     "cpu": _cpu(), "local_seconds": [], "served_seconds": {}}
    with tempfile.TemporaryDirectory(prefix="ttlesson-serve-bench-") as scratch:
        scratch = Path(scratch)
        backend = TorchBackend(models.resolve("tiny"), device="cpu", precision="float32")
        backend.load()
        url = f"http://127.0.0.1:{PORT}"
        timed = board("timed", args.frames, 0)

        def local(number: int) -> float:
            backend._prompts.clear()  # the service's actor encodes each prompt once per frame too
            started = time.perf_counter()
            render(timed, scratch / f"local-{number}", model="tiny", backend=backend, server="")
            return time.perf_counter() - started

        def served(actors: int, number: int) -> float:
            started = time.perf_counter()
            render(timed, scratch / f"served-{actors}-{number}", model="tiny", server=url)
            return time.perf_counter() - started

        local(-1)  # warm-up
        for actors in args.actors:
            service = _start_service(actors, scratch / f"serve-{actors}.log")
            try:
                render(board("warm", 2 * actors, 1000), scratch / f"warm-{actors}", model="tiny", server=url)
                rounds = results["served_seconds"][actors] = []
                for number in range(args.rounds):  # local and served in turn, so drift hits both alike
                    if actors == 1:
                        results["local_seconds"].append(local(len(results["local_seconds"])))
                    rounds.append(served(actors, number))
            finally:
                service.terminate()
                service.wait(60)
        backend.close()
        reference = sorted((scratch / "local-0" / "frames").glob("*.png"))
        results["same_bytes_as_local"] = all(
            (folder / "frames" / path.name).read_bytes() == path.read_bytes()
            for folder in scratch.glob("served-*") for path in reference)

    per_frame = {actors: statistics.median(times) / args.frames for actors, times in results["served_seconds"].items()}
    if results["local_seconds"]:
        local_frame = statistics.median(results["local_seconds"]) / args.frames
        print(f"local render, 1 thread: {local_frame:.3f} s/frame ({1 / local_frame:.2f} frames/s), median of "
              f"{args.rounds}")
    for actors, seconds in per_frame.items():
        print(f"service, {actors} actor(s): {seconds:.3f} s/frame ({1 / seconds:.2f} frames/s), median of "
              f"{args.rounds}")
    print(f"every served frame byte-identical to the local one: {results['same_bytes_as_local']}")
    if 1 in per_frame and results["local_seconds"]:
        results["overhead_per_frame"] = per_frame[1] / local_frame - 1
        print(f"service overhead per frame (1 actor vs local): {100 * results['overhead_per_frame']:+.1f}%")
    if 1 in per_frame and 2 in per_frame:
        results["speedup_2_vs_1"] = per_frame[1] / per_frame[2]
        print(f"2 actors vs 1: {results['speedup_2_vs_1']:.2f}x frames/s")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


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
