"""Does a model draw what its prompt says? A small attribute classifier (the *judge*) answers, frame by frame.

The judge is a little CNN trained on procedural scenes (``ttlesson.offline.scenes``), whose time of day, main structure
and palette are known exactly. A model's frames are scored on prompts that name those attributes: for each
attribute, the share of frames the judge assigns the value the prompt named. A model that ignores its prompt
scores chance (a quarter for the four times of day, a sixth for the six structures, a fifth for the palettes).

``score(model, judge)`` renders through ``ttlesson.render`` — the same loop, scheduler, steps and guidance as
``make demo`` — so the numbers describe the frames a learner gets.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from .. import models
from ..models.tiny import shipped_tiny_weights
from ..presenting import Presentable
from . import scenes

if TYPE_CHECKING:
    import torch

JUDGE_FIRST_SEED = 10_000_000  # the judge's scenes never overlap the model's training scenes (seeds 0…N-1)
JUDGE_SIZE = 64  # frames are judged at 64×64: enough for sky, structure and colour
JUDGE_FILE = "scene-judge.safetensors"  # in ttlesson/data
_SIZES = tuple(len(values) for values in scenes.ATTRIBUTES.values())

# Prompts in the World's Fair storyboard's style, each naming a time of day, a structure and a palette.
DEMO_TEMPLATES = (
    "Tenstorrent pavilion at 1964 World's Fair, {structure}, {palette}, crowds in 1960s attire, {time}",
    "{time}, {structure} at the World's Fair, {palette}, nostalgic vintage photograph",
    "1964 World's Fair, {structure}, {time}, {palette}, documentary photography",
    "Tenstorrent pavilion, {structure}, {time}, {palette}, retro-futurism",
)


@dataclass(frozen=True)
class JudgePlan:
    scenes: int = 4000
    steps: int = 1200
    batch: int = 64
    lr: float = 2e-3
    seed: int = 0
    threads: int = 2

    @classmethod
    def quick(cls) -> JudgePlan:
        return cls(scenes=24, steps=3, batch=8)


@dataclass(frozen=True)
class DemoPrompt:
    prompt: str
    time: str
    structure: str
    palette: str


@dataclass
class Score(Presentable):
    """Per attribute, the share of frames the judge gave the value their prompt named."""

    model: str
    accuracy: dict[str, float]
    frames: list[dict] = field(default_factory=list)  # prompt, named values, judged values, file

    def __str__(self) -> str:
        return f"{self.model}: " + ", ".join(f"{name} {value:.0%}" for name, value in self.accuracy.items())


def demo_prompts() -> list[DemoPrompt]:
    """96 prompts: every time of day with every structure, in four storyboard-style templates, palettes in turn."""
    prompts: list[DemoPrompt] = []
    for t, time in enumerate(scenes.TIMES):
        for s, structure in enumerate(scenes.STRUCTURES):
            for k, template in enumerate(DEMO_TEMPLATES):
                i = len(prompts)
                palette = scenes.PALETTES[i % len(scenes.PALETTES)]
                words = {
                    "time": _nth(scenes.TIME_PHRASES[time], t + s + k),
                    "structure": _nth(scenes.STRUCTURE_PHRASES[structure], t + k),
                    "palette": _nth(scenes.PALETTE_PHRASES[palette], s + k),
                }
                prompts.append(DemoPrompt(template.format(**words), time, structure, palette))
    return prompts


def _nth(options: tuple[str, ...], n: int) -> str:
    return options[n % len(options)]


# --- the judge ---------------------------------------------------------------------------------------------

def judge_network():
    """The judge's layers: four small convolutions on a 64×64 frame, then one logit per attribute value."""
    import torch.nn as nn

    def block(cin, cout, stride=1):
        return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]

    return nn.Sequential(
        *block(3, 16, stride=2), *block(16, 32), nn.MaxPool2d(2), *block(32, 64), nn.MaxPool2d(2),
        *block(64, 64), nn.MaxPool2d(2), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
        nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, sum(_SIZES)),
    )


def train_judge(plan: JudgePlan = JudgePlan(), vae=None, on_progress=print):
    """Train the judge on scenes of its own, blurred and noised at random so decoded frames look familiar.

    Given the model's ``vae``, half of each batch is the scenes after a trip through it (encoded, decoded):
    the judge then knows what a structure looks like once that decoder has drawn it, as in every frame it will
    judge. It never sees a frame the UNet made.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(plan.threads)
    try:
        torch.manual_seed(plan.seed)
        batch_scenes = scenes.scenes(plan.scenes, first_seed=JUDGE_FIRST_SEED)
        drawn = [scene.draw() for scene in batch_scenes]
        pixels = pixels_of(drawn)
        decoded = pixels_of(round_trip(vae, drawn)) if vae is not None else pixels
        labels = torch.tensor([list(scene.labels.values()) for scene in batch_scenes])
        network = judge_network()
        optimizer = torch.optim.AdamW(network.parameters(), lr=plan.lr, weight_decay=1e-4)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=plan.lr, total_steps=plan.steps)
        generator = torch.Generator().manual_seed(plan.seed)
        network.train()
        for step in range(plan.steps):
            index = torch.randint(len(pixels), (plan.batch,), generator=generator)
            through_vae = (torch.rand(plan.batch, generator=generator) < 0.5).view(-1, 1, 1, 1)
            batch = torch.where(through_vae, decoded[index], pixels[index])
            logits = network(_augment(batch, generator))
            loss = cast(torch.Tensor, sum(torch.nn.functional.cross_entropy(part, labels[index, i])
                                          for i, part in enumerate(_split(logits))))  # not 0: there are parts
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            if (step + 1) % 200 == 0 or step + 1 == plan.steps:
                on_progress(f"judge step {step + 1}/{plan.steps}  loss {loss.item():.3f}")
        network.eval()
    finally:
        torch.set_num_threads(threads)
    return network


def round_trip(vae, images, batch: int = 50):
    """PIL images encoded and decoded by ``vae``: what a frame can show at best, drawn by that decoder."""
    import numpy as np
    import torch
    from PIL import Image

    pixels = torch.from_numpy(np.stack([np.asarray(i.convert("RGB")) for i in images])).permute(0, 3, 1, 2)
    pixels = pixels.float() / 127.5 - 1
    with torch.no_grad():
        decoded = torch.cat([vae.decode(vae.encode(pixels[i:i + batch]).latent_dist.mode()).sample
                             for i in range(0, len(pixels), batch)])
    arrays = ((decoded.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    return [Image.fromarray(a) for a in arrays]


def shipped_judge():
    """The judge that scored the shipped tiny model (trained by tools/train_tiny.py), ready to classify."""
    from importlib import resources

    return load_judge(Path(str(resources.files("ttlesson.data").joinpath(JUDGE_FILE))))


def shipped_score() -> Score:
    """The shipped tiny model's score on ``demo_prompts()``, as measured when its weights were made."""
    data = json.loads((shipped_tiny_weights() / "score.json").read_text())
    return Score(data["model"], data["accuracy"], data.get("frames", []))


def write_score(result: Score, path: Path) -> None:
    Path(path).write_text(json.dumps(result.to_dict(), indent=1))


def save_judge(network, path: Path) -> None:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in network.state_dict().items()}, path, metadata={"format": "pt"})


def load_judge(path: Path):
    from safetensors.torch import load_file

    network = judge_network()
    network.load_state_dict(load_file(path))
    return network.eval()


def pixels_of(images) -> torch.Tensor:
    """PIL images as a float tensor (N, 3, 64, 64) in [-1, 1], the judge's input."""
    import numpy as np
    import torch
    from PIL import Image

    arrays = [np.asarray(image.convert("RGB").resize((JUDGE_SIZE, JUDGE_SIZE), Image.Resampling.BOX))
              for image in images]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def classify(network, images) -> list[dict[str, str]]:
    """The judge's verdict for each image: ``{"time": ..., "structure": ..., "palette": ...}``."""
    import torch

    with torch.no_grad():
        parts = _split(network(pixels_of(images)))
    names = list(scenes.ATTRIBUTES)
    return [{name: scenes.ATTRIBUTES[name][int(part[row].argmax())] for name, part in zip(names, parts)}
            for row in range(len(images))]


def judge_accuracy(network, images, truth: list[scenes.Scene]) -> dict[str, float]:
    verdicts = classify(network, images)
    return {name: sum(v[name] == getattr(scene, name) for v, scene in zip(verdicts, truth)) / len(truth)
            for name in scenes.ATTRIBUTES}


def _split(logits):
    return logits.split(_SIZES, dim=1)


def _augment(batch, generator):
    """Random blur (up to what the VAE's decoder does to edges), a shift of a few pixels, and a little noise."""
    import torch
    import torch.nn.functional as F

    n = len(batch)
    sigma = torch.rand(n, generator=generator) * 1.2 + 1e-3
    taps = torch.arange(-2, 3, dtype=torch.float32)
    kernel = torch.exp(-taps[None] ** 2 / (2 * sigma[:, None] ** 2))
    kernel = kernel / kernel.sum(1, keepdim=True)  # (n, 5), one Gaussian per image
    padded = F.pad(batch, (2, 2, 2, 2), mode="replicate")
    rows = cast(torch.Tensor, sum(kernel[:, i, None, None, None] * padded[:, :, i:i + JUDGE_SIZE, :]
                                  for i in range(5)))
    blurred = cast(torch.Tensor, sum(kernel[:, i, None, None, None] * rows[:, :, :, i:i + JUDGE_SIZE]
                                     for i in range(5)))
    shift = torch.randint(-3, 4, (2,), generator=generator).tolist()
    shifted = torch.roll(F.pad(blurred, (3, 3, 3, 3), mode="replicate"), shifts=shift, dims=(2, 3))[:, :, 3:-3, 3:-3]
    noise = torch.randn(shifted.shape, generator=generator) * torch.rand(n, 1, 1, 1, generator=generator) * 0.06
    return shifted + noise


# --- scoring a model ---------------------------------------------------------------------------------------

def render_as_demo(board, model: str, out_dir, seed: int = 0, steps: int | None = None,
                   guidance: float | None = None, on_event=None):
    """Render ``board`` with ``model`` at the ``tiny`` model's settings (steps, guidance, size, torch float32 on the
    CPU) whatever ``model`` is, so that models are compared on the frames ``make demo`` would make."""
    from ..render import render

    tiny = models.REGISTRY["tiny"]
    return render(board, out_dir, model=model, backend="torch", device="cpu", precision="float32", seed=seed,
                  steps=steps or tiny.steps, guidance=guidance or tiny.guidance, size=(tiny.width, tiny.height),
                  overwrite=True, on_event=on_event)


def score(model: str, judge, out_dir, prompts: list[DemoPrompt] | None = None, seed: int = 0,
          steps: int | None = None, guidance: float | None = None, on_event=None) -> Score:
    """Render ``prompts`` (default: ``demo_prompts()``) with ``model`` into ``out_dir`` (``render_as_demo``) and
    judge every frame."""
    from PIL import Image

    from .. import storyboard

    prompts = prompts or demo_prompts()
    board = storyboard.loads(json.dumps([p.prompt for p in prompts]), source="judged prompts")
    paths = render_as_demo(board, model, out_dir, seed, steps, guidance, on_event).frame_paths
    verdicts = classify(judge, [Image.open(path) for path in paths])
    frames: list[dict[str, Any]] = [
        {"prompt": p.prompt, "named": {"time": p.time, "structure": p.structure, "palette": p.palette},
         "judged": verdict, "file": str(path)} for p, verdict, path in zip(prompts, verdicts, paths)]
    accuracy = {name: sum(f["judged"][name] == f["named"][name] for f in frames) / len(frames)
                for name in scenes.ATTRIBUTES}
    return Score(model, accuracy, frames)
