"""What ttlesson's render loop costs over calling the diffusers pipeline directly, on the offline tiny model.

Both sides use one loaded pipeline and make the same frames (the World's Fair prompts, seed i for frame i, the
tiny model's 10 steps at 128×128): the direct side calls the pipeline and saves each PNG with PIL; ttlesson's
side is ``render`` (settings, resume plan, progress events, PNG encoding, SHA-256, atomic writes with fsync,
the manifest after every frame). Rounds alternate which side goes first; the text-embedding cache is emptied
before each of ttlesson's rounds so both run the text encoder for every frame. Prints medians and the ratio,
of wall time and of this process's CPU time (which other work on a shared machine disturbs less).

    python benchmarks/render_overhead.py [--rounds 7] [--frames 10] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--frames", type=int, default=10, help="frames per round (the first N prompts)")
    parser.add_argument("--json", default=None, metavar="FILE")
    args = parser.parse_args()

    import torch

    from ttlesson import models
    from ttlesson.backends.torch import TorchBackend
    from ttlesson.render import render
    from ttlesson.storyboard import Storyboard, load

    spec = models.resolve("tiny")
    board = Storyboard(frames=load("worlds-fair").frames[:args.frames], name="overhead")
    backend = TorchBackend(spec, device="cpu", precision="float32")
    backend.load()
    pipe = backend.pipe

    def direct(folder: Path) -> None:
        for index, frame in enumerate(board.frames):
            image = pipe(prompt=frame.prompt, num_inference_steps=spec.steps, guidance_scale=spec.guidance,
                         width=spec.width, height=spec.height,
                         generator=torch.Generator("cpu").manual_seed(index)).images[0]
            image.save(folder / f"frame_{index:03d}.png")

    def wrapped(folder: Path) -> None:
        backend._prompts.clear()
        render(board, folder, model="tiny", backend=backend, on_event=lambda event: None)

    sides = {"diffusers direct": direct, "ttlesson render": wrapped}
    seconds = {name: [] for name in sides}
    cpu = {name: [] for name in sides}
    with tempfile.TemporaryDirectory(prefix="ttlesson-overhead-") as scratch:
        wrapped(Path(scratch) / "warm-up")  # first calls: thread pool, allocator, kernel selection
        for round_ in range(args.rounds):
            order = list(sides) if round_ % 2 == 0 else list(reversed(sides))
            for name in order:
                folder = Path(scratch) / f"{round_}-{name.replace(' ', '-')}"
                folder.mkdir()
                started, started_cpu = time.perf_counter(), time.process_time()
                sides[name](folder)
                seconds[name].append((time.perf_counter() - started) / len(board))
                cpu[name].append((time.process_time() - started_cpu) / len(board))
            print(f"round {round_ + 1}: " + ", ".join(f"{name} {values[-1]:.4f} s/frame ({cpu[name][-1]:.4f} s CPU)"
                                                     for name, values in seconds.items()), flush=True)
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    ratio = medians["ttlesson render"] / medians["diffusers direct"]
    per_round = [w / d for w, d in zip(seconds["ttlesson render"], seconds["diffusers direct"])]
    cpu_medians = {name: statistics.median(values) for name, values in cpu.items()}
    cpu_ratio = cpu_medians["ttlesson render"] / cpu_medians["diffusers direct"]
    report = {"seconds_per_frame_median": medians, "overhead": round(ratio - 1, 4),
              "cpu_seconds_per_frame_median": cpu_medians, "cpu_overhead": round(cpu_ratio - 1, 4),
              "overhead_per_round": [round(r - 1, 4) for r in per_round], "rounds": args.rounds,
              "frames_per_round": len(board), "torch_threads": torch.get_num_threads(),
              "date": time.strftime("%Y-%m-%d")}
    for name, value in medians.items():
        print(f"{name}: {value:.4f} s/frame (median of {args.rounds} rounds)")
    print(f"ttlesson's render loop over the direct pipeline: {100 * (ratio - 1):+.1f}% wall "
          f"(per round: {', '.join(f'{100 * (r - 1):+.1f}%' for r in per_round)}), "
          f"{100 * (cpu_ratio - 1):+.1f}% CPU time")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
