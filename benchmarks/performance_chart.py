"""Draw docs/performance.png: seconds per guided SD 1.4 UNet step measured here next to published TT numbers.

    python benchmarks/performance_chart.py BENCH.json [--out docs/performance.png]

BENCH.json is the output of ``ttlesson bench --arch-only --model sd14 --size 512 --compare diffusers-default
--json BENCH.json``. Each bar is labelled measured-here (with the date and machine) or published.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

# tt-metal's own table (not measured by this project): SD 1.4 at 512×512 on one N150, traced UNet step.
PUBLISHED = [("N150 (Wormhole), tt-metal, traced, 512×512", 0.113)]
# Issue 15's measurements on a host of the project's machine with AVX512-BF16 (same session, 512×512).
BF16_HOST = [("torch float32 (diffusers default), 512×512", 10.1), ("torch bfloat16 + channels-last, 512×512", 5.5),
             ("OpenVINO bfloat16, 512×512", 4.25)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench", help="JSON written by ttlesson bench --arch-only --json FILE")
    parser.add_argument("--out", default="docs/performance.png")
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    result = json.loads(Path(args.bench).read_text())
    machine = result["machine"]
    where = (f"{machine['cpu']} ({machine.get('torch_cpu_capability', '?')}), {machine['threads']} threads, "
             f"load average {machine.get('load_average', ['?'])[0]}, {result['date']}")
    size = f"{result['width']}×{result['height']}"
    bars = [(f"{stack['name']}, {size}\n(measured here)", _median(stack["unet_step_seconds"]), "tab:blue")
            for stack in result["stacks"]]
    bars += [(f"{name}\n(measured, AVX512-BF16 host, issue 15)", seconds, "tab:green") for name, seconds in BF16_HOST]
    bars += [(f"{name}\n(published)", seconds, "tab:orange") for name, seconds in PUBLISHED]
    figure, axis = plt.subplots(figsize=(10, 1.4 + 0.75 * len(bars)))
    labels = [label for label, _, _ in bars]
    axis.barh(labels, [seconds for _, seconds, _ in bars], color=[colour for _, _, colour in bars])
    axis.set_xscale("log")
    axis.invert_yaxis()
    for position, (_, seconds, _) in enumerate(bars):
        axis.text(seconds, position, f" {seconds:.3g} s", va="center")
    axis.set_xlabel("seconds per guided UNet step, SD 1.4 (log scale; less is faster)")
    axis.set_title(f"Measured here: {where}\n(a 2-core VM shared with other work; compare within a colour)",
                   fontsize=9)
    axis.set_xlim(right=max(seconds for _, seconds, _ in bars) * 4)
    figure.tight_layout()
    figure.savefig(args.out, dpi=110)
    print(args.out)


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


if __name__ == "__main__":
    main()
