"""Make the shipped offline tiny model, its judge, and the numbers and figures of docs/offline-model.md.

    python tools/train_tiny.py --out build/tiny            # everything, about an hour on two CPU cores
    python tools/train_tiny.py --out build/tiny --ship     # then copy the results into ttlesson/data/

1. train the tiny model (``ttlesson.offline.training``: the recipe ``ttlesson train-tiny`` runs);
2. train the judge (``ttlesson.offline.judge``) on scenes of its own, half of them after a round trip through the
   model's VAE (every frame it will judge is drawn by that decoder); measure it on held-out scenes, as drawn and
   through the VAE;
3. score it and the random-weight model on the demo prompts; score it again at several guidance scales on other
   seeds (how the ``tiny`` default was chosen); render the World's Fair storyboard on a few seeds, judging the
   frames whose prompts name a time of day or a structure;
4. draw the figures into docs/ and write OUT/report.json, whose numbers the document quotes;
5. with ``--ship``: the weights, tokenizer and score go to ttlesson/data/tiny-sd/, the judge next to them.

``--model-from DIR`` and ``--judge-from FILE`` reuse a model or judge made earlier and skip its training.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ttlesson import storyboard  # noqa: E402
from ttlesson.models.tiny import TINY_WEIGHTS_DIR  # noqa: E402
from ttlesson.offline import judge as judges  # noqa: E402
from ttlesson.offline import scenes, training  # noqa: E402

DOCS = ROOT / "docs"
STORYBOARD_SEEDS = (0, 100, 200, 300, 400)
SWEEP_GUIDANCE = (2.0, 2.5, 3.0, 4.0, 7.5)  # 7.5 is SD 1.4's
SWEEP_SEED = 1000  # the sweep's frames are not the score's (seeds 0…95): the default is not chosen on them
HELD_OUT_FIRST_SEED = 20_000_000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model-from", type=Path, help="a train-tiny output folder to reuse instead of training")
    parser.add_argument("--judge-from", type=Path, help="a judge .safetensors to reuse instead of training one")
    parser.add_argument("--ship", action="store_true", help="copy the weights, score and judge into the package")
    args = parser.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    report: dict = {"machine_note": "2-core shared machine: wall times are inflated by other work; CPU is the "
                                    "process's own CPU time, all threads"}

    # 1. the model
    if args.model_from:
        model_dir = args.model_from
        report["training"] = json.loads((model_dir / "training.json").read_text())
    else:
        result = training.train(out / "model", training.TrainingPlan(seed=args.seed), on_progress=log)
        model_dir = result.out_dir
        report["training"] = result.to_dict()
    pipeline = str(model_dir / "pipeline")
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(pipeline, subfolder="vae").eval()  # loaded once: the judge's and its check's

    # 2. the judge, knowing what scenes look like after the model's VAE
    started = time.perf_counter(), time.process_time()
    judge_path = out / judges.JUDGE_FILE
    if args.judge_from:
        shutil.copyfile(args.judge_from, judge_path)
    else:
        network = judges.train_judge(judges.JudgePlan(seed=args.seed), vae=vae, on_progress=log)
        judges.save_judge(network, judge_path)
    judge = judges.load_judge(judge_path)
    report["judge_seconds"] = _since(started)

    held_out = scenes.scenes(600, first_seed=HELD_OUT_FIRST_SEED)
    drawn = [scene.draw() for scene in held_out]
    report["judge_on_held_out_scenes"] = judges.judge_accuracy(judge, drawn, held_out)
    report["judge_on_vae_round_trip"] = judges.judge_accuracy(
        judge, judges.round_trip(vae, drawn), held_out)
    log(f"judge on held-out scenes {report['judge_on_held_out_scenes']}, "
        f"through the VAE {report['judge_on_vae_round_trip']}")

    # 3. scores
    scores = {}
    for name, model in (("tiny", pipeline), ("tiny-random", "tiny-random")):
        started = time.perf_counter(), time.process_time()
        scores[name] = judges.score(model, judge, out / "judged" / name)
        log(f"{scores[name]}  ({_since(started)['wall_s']:.0f} s)")
    report["scores"] = {name: s.accuracy for name, s in scores.items()}
    report["guidance_sweep"] = {}
    for guidance in SWEEP_GUIDANCE:
        swept = judges.score(pipeline, judge, out / "judged" / f"guidance-{guidance:g}", seed=SWEEP_SEED,
                                 guidance=guidance)
        report["guidance_sweep"][f"{guidance:g}"] = swept.accuracy
        log(f"guidance {guidance:g}, seeds from {SWEEP_SEED}: {swept}")
    report["storyboard"] = _storyboard_check(pipeline, judge, out / "storyboard")
    for line in report["storyboard"]["lines"]:
        log(line)

    # 4. figures
    _grid(scores["tiny"], scores["tiny-random"], DOCS / "offline-model-grid.png")
    _storyboard_strip(out / "storyboard", DOCS / "offline-model-storyboard.png")
    _curve(report["training"]["curve"], DOCS / "offline-model-curve.png")
    _scene_samples(DOCS / "offline-model-scenes.png")
    (out / "report.json").write_text(json.dumps(report, indent=1))
    judges.write_score(scores["tiny"], model_dir / TINY_WEIGHTS_DIR / "score.json")
    log(f"report: {out / 'report.json'}")

    # 5. ship
    if args.ship:
        target = ROOT / "ttlesson" / "data" / TINY_WEIGHTS_DIR
        target.mkdir(exist_ok=True)
        for name in ("model.safetensors", "vocab.json", "merges.txt", "score.json"):
            shutil.copyfile(model_dir / TINY_WEIGHTS_DIR / name, target / name)
        shutil.copyfile(judge_path, ROOT / "ttlesson" / "data" / judges.JUDGE_FILE)
        log(f"shipped into {target}")
    return 0


def log(message: str) -> None:
    print(time.strftime("%H:%M:%S"), message, flush=True)


def _since(started) -> dict:
    return {"wall_s": time.perf_counter() - started[0], "cpu_s": time.process_time() - started[1]}


def _storyboard_check(pipeline: str, judge, out: Path) -> dict:
    """The World's Fair storyboard on a few seeds: for prompts naming a time or structure, did the frame show it?"""
    from PIL import Image

    board = storyboard.load("worlds-fair")
    hits: dict[str, list[int]] = {}
    lines = []
    for seed in STORYBOARD_SEEDS:
        result = judges.render_as_demo(board, pipeline, out / f"seed-{seed}", seed=seed)
        verdicts = judges.classify(judge, [Image.open(p) for p in result.frame_paths])
        for index, (prompt, verdict) in enumerate(zip(board.prompts, verdicts)):
            for name, value in scenes.named_attributes(prompt).items():
                if name in scenes.ATTRIBUTES:
                    hits.setdefault(f"frame {index} {name}={value}", []).append(int(verdict[name] == value))
    for key, values in hits.items():
        lines.append(f"storyboard {key}: {sum(values)}/{len(values)} seeds")
    return {"seeds": list(STORYBOARD_SEEDS), "hits": hits, "lines": lines}


def _cells(score, rows, columns, pick):
    from PIL import Image

    return [[Image.open(pick(score, row, column)) for column in columns] for row in rows]


def _grid(trained, random_weights, path: Path, cell: int = 96) -> None:
    """Rows: structures; columns: times of day; one frame per cell from the first matching demo prompt.

    The last row is the random-weight model on the day prompts, for contrast.
    """
    from PIL import Image, ImageDraw

    def first(score, structure, time):
        return next(f["file"] for f in score.frames
                    if f["named"]["structure"] == structure and f["named"]["time"] == time)

    label_w, label_h = 84, 16
    rows = list(scenes.STRUCTURES) + ["tiny-random"]
    grid = Image.new("RGB", (label_w + cell * len(scenes.TIMES), label_h + cell * len(rows)), "white")
    draw = ImageDraw.Draw(grid)
    for c, time_of_day in enumerate(scenes.TIMES):
        draw.text((label_w + c * cell + 4, 2), time_of_day, fill="black")
    for r, structure in enumerate(rows):
        draw.text((4, label_h + r * cell + cell // 2 - 6), structure, fill="black")
        for c, time_of_day in enumerate(scenes.TIMES):
            source = random_weights if structure == "tiny-random" else trained
            file = first(source, scenes.STRUCTURES[c] if source is random_weights else structure, time_of_day)
            frame = Image.open(file).convert("RGB").resize((cell, cell), Image.LANCZOS)
            grid.paste(frame, (label_w + c * cell, label_h + r * cell))
    grid.save(path, optimize=True)


def _storyboard_strip(folder: Path, path: Path, cell: int = 96) -> None:
    from PIL import Image

    frames = sorted((folder / f"seed-{STORYBOARD_SEEDS[0]}" / "frames").glob("frame_*.png"))
    strip = Image.new("RGB", (cell * 5, cell * 2), "white")
    for i, frame in enumerate(frames[:10]):
        cell_image = Image.open(frame).convert("RGB").resize((cell, cell), Image.LANCZOS)
        strip.paste(cell_image, ((i % 5) * cell, (i // 5) * cell))
    strip.save(path, optimize=True)


def _scene_samples(path: Path, cell: int = 96) -> None:
    """What the model learned from: one drawn scene per time of day and structure."""
    from PIL import Image

    grid = Image.new("RGB", (cell * len(scenes.STRUCTURES), cell * len(scenes.TIMES)), "white")
    for r, time_of_day in enumerate(scenes.TIMES):
        for c, structure in enumerate(scenes.STRUCTURES):
            image = scenes.Scene.random(r * 10 + c, time=time_of_day, structure=structure).draw()
            grid.paste(image.resize((cell, cell), Image.LANCZOS), (c * cell, r * cell))
    grid.save(path, optimize=True)


def _curve(curve: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(11, 2.8), dpi=90)
    titles = (("vae", "VAE: L1 + L2 + KL"), ("text", "text encoder: reading the captions"),
              ("unet", "UNet: min-SNR-weighted noise MSE"))
    for ax, (stage, title) in zip(axes, titles):
        steps, losses = zip(*curve[stage])
        ax.plot(steps, losses)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)


if __name__ == "__main__":
    sys.exit(main())
