"""Train the offline ``tiny`` model on procedural World's Fair scenes, on a CPU, from fixed seeds.

``train(out_dir)`` reads top to bottom as the recipe:

1. draw the scenes (``ttlesson.offline.scenes``) and several captions for each, in the storyboard's words;
2. train the VAE (AutoencoderKL) to rebuild random crops of the scenes through latents 8× smaller;
3. encode every scene once; the spread of the latents gives the VAE's scaling factor (SD 1.x's is 0.18215);
4. teach the CLIP text encoder to read a caption: from its token states it must tell which time of day, main
   structure, palette and background structure the caption names (``scenes.named_attributes`` is the answer
   key); then freeze it, as SD 1.x freezes its CLIP text encoder, and encode every caption once;
5. train the UNet on SD 1.x's objective — predict the noise added to the latents at a random step of the same
   noise schedule, given the caption's token states — with one caption in ten left empty, so that
   classifier-free guidance has an unconditional prediction to push away from;
6. keep an exponential moving average of the UNet's weights and save everything: ``tiny-sd/`` (the files the
   package ships: half-precision weights and the tokenizer) and ``pipeline/`` (the diffusers folder, usable as
   ``--model``).

The architecture is ``tiny.TINY_ARCHITECTURE``; every random choice comes from ``TrainingPlan.seed``, and
torch runs with a fixed number of threads (its CPU sums depend on it), so the same plan on the same machine and
library versions gives the same weights.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import cast

from ..errors import TTLessonError
from ..fileio import writable_folder
from ..inputs import user_path, whole_number
from ..models import hub, tiny
from ..presenting import Presentable
from . import scenes


@dataclass(frozen=True)
class TrainingPlan:
    scenes: int = 3000
    captions_per_scene: int = 4
    size: int = 128
    vae_steps: int = 1500
    vae_batch: int = 16
    vae_crop: int = 64  # the VAE is convolutional: crops teach it as well as whole frames, 4× cheaper
    vae_lr: float = 1e-3
    vae_kl_weight: float = 1e-6
    text_steps: int = 400
    text_batch: int = 128
    text_lr: float = 2e-3
    unet_steps: int = 5000
    unet_batch: int = 32
    unet_lr: float = 1e-3
    warmup_steps: int = 100
    caption_dropout: float = 0.1
    min_snr_gamma: float = 5.0  # Hang et al. 2023: weight the loss by min(SNR, γ)/SNR; converges faster
    ema_decay: float = 0.999
    seed: int = 0
    threads: int = 2  # torch's CPU sums depend on the thread count: the same plan gives the same weights
    log_every: int = 50

    @classmethod
    def quick(cls) -> TrainingPlan:
        """A few steps of everything: checks that the recipe runs, learns nothing."""
        return cls(scenes=16, captions_per_scene=2, size=64, vae_steps=2, vae_batch=2, vae_crop=32, text_steps=2,
                   text_batch=4, unet_steps=2, unet_batch=2, warmup_steps=1, log_every=1)


@dataclass
class StageTime:
    wall_s: float = 0.0
    cpu_s: float = 0.0  # process CPU time, all threads: what the work cost, however busy the machine was


@dataclass
class TrainingResult(Presentable):
    out_dir: Path
    plan: TrainingPlan
    curve: dict[str, list[tuple[int, float]]]  # stage -> (step, mean loss over the last log_every steps)
    reading: dict[str, float] = field(default_factory=dict)  # the text encoder's accuracy at reading captions
    times: dict[str, StageTime] = field(default_factory=dict)
    scaling_factor: float = 0.0

    @property
    def weights_dir(self) -> Path:
        return self.out_dir / tiny.TINY_WEIGHTS_DIR

    @property
    def pipeline_dir(self) -> Path:
        return self.out_dir / "pipeline"

    def to_dict(self) -> dict:
        return {"plan": asdict(self.plan), "curve": self.curve, "scaling_factor": self.scaling_factor,
                "reading": self.reading,
                "times": {stage: asdict(t) for stage, t in self.times.items()}}

    def __str__(self) -> str:
        total = StageTime(sum(t.wall_s for t in self.times.values()), sum(t.cpu_s for t in self.times.values()))
        return (f"trained in {total.wall_s / 60:.1f} min wall, {total.cpu_s / 60:.1f} min CPU; "
                f"weights in {self.weights_dir}, pipeline in {self.pipeline_dir}")


# What ``train`` writes into its folder; a folder already holding any of them is refused unless overwriting.
OUTPUTS = (tiny.TINY_WEIGHTS_DIR, "pipeline", "training.json", "score.json", "judged")


def train(out_dir, plan: TrainingPlan = TrainingPlan(), on_progress: Callable[[str], None] = print,
          overwrite: bool = False) -> TrainingResult:
    """Train the tiny model by ``plan`` into ``out_dir`` (see the module's docstring for the steps)."""
    whole_number(plan.seed, "--seed", 0, 2**31 - 1)
    out_dir = prepare_out_dir(out_dir, overwrite)
    import torch

    result = TrainingResult(out_dir, plan, curve={"vae": [], "text": [], "unet": []})
    threads = torch.get_num_threads()
    torch.set_num_threads(plan.threads)
    try:
        with _timed(result, "scenes"):
            images, captions = _draw_scenes(plan)
            on_progress(f"drew {len(images)} scenes ({plan.size}×{plan.size}), {plan.captions_per_scene} captions each")
        tokenizer = _tokenizer(result.weights_dir)
        components = tiny.tiny_components(tiny.TINY_ARCHITECTURE, tokenizer)
        with _timed(result, "vae"):
            _train_vae(components["vae"], images, plan, result.curve["vae"], on_progress)
        with _timed(result, "encode"):
            means, stds = _encode(components["vae"], images)
            result.scaling_factor = float(1.0 / (means + stds * torch.randn(
                means.shape, generator=torch.Generator().manual_seed(plan.seed))).std())
            on_progress(f"encoded the scenes to {tuple(means.shape[1:])} latents; "
                        f"scaling factor {result.scaling_factor:.4f}")
        with _timed(result, "text"):
            tokens = _tokenize(tokenizer, captions)
            empty = _tokenize(tokenizer, [[""]])[0, 0]
            result.reading = _train_text_encoder(components["text_encoder"], tokens, captions, plan,
                                                 result.curve["text"], on_progress)
            states, empty_states = _encode_captions(components["text_encoder"], tokens, empty)
        with _timed(result, "unet"):
            _train_unet(components["unet"], means, stds, states, empty_states, result.scaling_factor, plan,
                        result.curve["unet"], on_progress)
        tiny.save_tiny_weights(components, result.weights_dir / "model.safetensors", result.scaling_factor,
                                 metadata={"seed": plan.seed, "scenes": plan.scenes})
        tiny.build_tiny_pipeline(result.pipeline_dir, result.weights_dir)
    finally:
        torch.set_num_threads(threads)
    (out_dir / "training.json").write_text(json.dumps(result.to_dict(), indent=1))
    on_progress(str(result))
    return result


def prepare_out_dir(out_dir, overwrite: bool = False) -> Path:
    """The output folder, created and checked before any work; one sentence if it holds an earlier model."""
    out_dir = writable_folder(user_path(out_dir), "--out", fills=True)
    taken = [name for name in OUTPUTS if (out_dir / name).exists()]
    if taken and not overwrite:
        raise TTLessonError(f"--out {out_dir} already holds a trained model ({', '.join(taken)}); choose an empty "
                            "folder, or pass --overwrite to replace it.")
    for name in taken:
        path = out_dir / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return out_dir


class _timed:
    def __init__(self, result: TrainingResult, stage: str):
        self.result, self.stage = result, stage

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def __exit__(self, *exc):
        self.result.times[self.stage] = StageTime(time.perf_counter() - self.wall, time.process_time() - self.cpu)


def _draw_scenes(plan: TrainingPlan):
    """Scenes from seeds 0…N-1 as one uint8 tensor (N, 3, size, size), and each scene's captions."""
    import numpy as np
    import torch

    batch = scenes.scenes(plan.scenes, first_seed=0)
    pixels = np.stack([np.asarray(scene.draw(plan.size)) for scene in batch])
    captions = [[scene.caption(v) for v in range(plan.captions_per_scene)] for scene in batch]
    return torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous(), captions


def _tokenizer(weights_dir: Path):
    from transformers import CLIPTokenizer

    hub.quiet_hf_libraries()
    tiny.write_tiny_tokenizer(weights_dir)
    return CLIPTokenizer.from_pretrained(weights_dir)


def _tokenize(tokenizer, captions: list[list[str]]):
    """Token ids padded to 77, as StableDiffusionPipeline pads a prompt: (scenes, variants, 77)."""
    flat = [caption for variants in captions for caption in variants]
    ids = tokenizer(flat, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids
    return ids.view(len(captions), len(captions[0]), -1)


def _to_unit(pixels):
    return pixels.float() / 127.5 - 1.0


def _schedule(step: int, plan: TrainingPlan, steps: int) -> float:
    """Linear warm-up, then a cosine down to a tenth of the learning rate."""
    if step < plan.warmup_steps:
        return (step + 1) / plan.warmup_steps
    progress = (step - plan.warmup_steps) / max(1, steps - plan.warmup_steps)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


def _train_vae(vae, images, plan: TrainingPlan, curve: list, on_progress) -> None:
    import torch

    generator = torch.Generator().manual_seed(plan.seed + 1)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=plan.vae_lr, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _schedule(s, plan, plan.vae_steps))
    crop, span = plan.vae_crop, plan.size - plan.vae_crop + 1
    losses, started = [], time.perf_counter()
    vae.train()
    for step in range(plan.vae_steps):
        index = torch.randint(len(images), (plan.vae_batch,), generator=generator)
        corners = torch.randint(span, (plan.vae_batch, 2), generator=generator)
        batch = _to_unit(torch.stack([images[i, :, y:y + crop, x:x + crop]
                                      for i, (y, x) in zip(index.tolist(), corners.tolist())]))
        posterior = vae.encode(batch).latent_dist
        rebuilt = vae.decode(posterior.sample(generator=generator)).sample
        error = rebuilt - batch
        loss = error.abs().mean() + error.pow(2).mean() + plan.vae_kl_weight * posterior.kl().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
        _log("vae", step, plan.vae_steps, losses, curve, plan, started, on_progress)
    vae.eval()


def _encode(vae, images, batch: int = 64):
    """Every scene's latent distribution once: its mean and standard deviation."""
    import torch

    means, stds = [], []
    with torch.no_grad():
        for start in range(0, len(images), batch):
            posterior = vae.encode(_to_unit(images[start:start + batch])).latent_dist
            means.append(posterior.mean)
            stds.append(posterior.std)
    return torch.cat(means), torch.cat(stds)


# What the text encoder learns to read from a caption, with the values ``scenes.named_attributes`` gives.
READ = {"time": scenes.TIMES, "structure": scenes.STRUCTURES, "palette": scenes.PALETTES,
        "background": scenes.STRUCTURES}
_UNNAMED = -100  # cross_entropy's ignore_index: the caption does not name this attribute


def _caption_answers(captions: list[list[str]]):
    """For each caption, the index of each ``READ`` attribute it names, or ``_UNNAMED``: (scenes, variants, 4)."""
    import torch

    answers = [[[READ[name].index(named[name]) if name in named else _UNNAMED for name in READ]
                for named in map(scenes.named_attributes, variants)] for variants in captions]
    return torch.tensor(answers)


def _train_text_encoder(text_encoder, tokens, captions, plan: TrainingPlan, curve, on_progress) -> dict[str, float]:
    """Teach the text encoder which attributes a caption names; returns its accuracy at it, per attribute.

    A linear head reads the attributes from the mean of the token states, so the meaning spreads over the
    states the UNet's cross-attention looks at. The head is thrown away; the encoder is frozen afterwards.
    """
    import torch

    sizes = [len(values) for values in READ.values()]
    ids, answers = tokens.flatten(0, 1), _caption_answers(captions).flatten(0, 1)
    generator = torch.Generator().manual_seed(plan.seed + 3)
    head = torch.nn.Linear(text_encoder.config.hidden_size, sum(sizes))
    with torch.no_grad():
        head.weight.copy_(torch.randn(head.weight.shape, generator=generator) * 0.02)
        head.bias.zero_()
    params = [*text_encoder.parameters(), *head.parameters()]
    optimizer = torch.optim.AdamW(params, lr=plan.text_lr, weight_decay=1e-2)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _schedule(s, plan, plan.text_steps))
    losses, started = [], time.perf_counter()
    text_encoder.train()
    for step in range(plan.text_steps):
        index = torch.randint(len(ids), (plan.text_batch,), generator=generator)
        logits = head(text_encoder(ids[index])[0].mean(dim=1)).split(sizes, dim=1)
        loss = cast(torch.Tensor, sum(torch.nn.functional.cross_entropy(part, answers[index, i], ignore_index=_UNNAMED)
                                      for i, part in enumerate(logits) if (answers[index, i] != _UNNAMED).any()))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
        _log("text", step, plan.text_steps, losses, curve, plan, started, on_progress)
    text_encoder.eval().requires_grad_(False)
    with torch.no_grad():
        logits = torch.cat([head(text_encoder(ids[i:i + 512])[0].mean(dim=1)) for i in range(0, len(ids), 512)])
    reading = {}
    for i, (name, part) in enumerate(zip(READ, logits.split(sizes, dim=1))):
        named = answers[:, i] != _UNNAMED
        reading[name] = float((part[named].argmax(dim=1) == answers[named, i]).float().mean()) if named.any() else 0.0
    on_progress("the text encoder reads the captions it learned from: "
                + ", ".join(f"{name} {value:.1%}" for name, value in reading.items()))
    return reading


def _encode_captions(text_encoder, tokens, empty, batch: int = 512):
    """Every caption's token states, once, from the frozen encoder: (scenes, variants, 77, width); the empty one's."""
    import torch

    flat = tokens.flatten(0, 1)
    with torch.no_grad():
        states = torch.cat([text_encoder(flat[i:i + batch])[0] for i in range(0, len(flat), batch)])
        empty_states = text_encoder(empty[None])[0][0]
    return states.view(*tokens.shape, -1), empty_states


def _train_unet(unet, means, stds, states, empty_states, scaling_factor, plan: TrainingPlan, curve, on_progress):
    import torch
    from diffusers import DDPMScheduler

    noise_schedule = DDPMScheduler.from_config(tiny.tiny_scheduler().config)
    alphas = noise_schedule.alphas_cumprod.float()
    snr = alphas / (1 - alphas)
    loss_weight = snr.clamp(max=plan.min_snr_gamma) / snr
    params = list(unet.parameters())
    optimizer = torch.optim.AdamW(params, lr=plan.unet_lr, weight_decay=1e-2)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _schedule(s, plan, plan.unet_steps))
    ema = [p.detach().clone() for p in params]
    generator = torch.Generator().manual_seed(plan.seed + 2)
    losses, started = [], time.perf_counter()
    unet.train()
    for step in range(plan.unet_steps):
        index = torch.randint(len(means), (plan.unet_batch,), generator=generator)
        variant = torch.randint(states.shape[1], (plan.unet_batch,), generator=generator)
        context = states[index, variant]
        dropped = torch.rand(plan.unet_batch, generator=generator) < plan.caption_dropout
        context[dropped] = empty_states
        latents = (means[index] + stds[index] * torch.randn(means[index].shape, generator=generator)) * scaling_factor
        noise = torch.randn(latents.shape, generator=generator)
        t = torch.randint(len(alphas), (plan.unet_batch,), generator=generator)
        a = alphas[t].view(-1, 1, 1, 1)
        noisy = a.sqrt() * latents + (1 - a).sqrt() * noise
        prediction = unet(noisy, t, context).sample
        loss = (loss_weight[t] * (prediction - noise).pow(2).mean(dim=(1, 2, 3))).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        decay = min(plan.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for average, param in zip(ema, params):
                average.lerp_(param, 1 - decay)
        losses.append(loss.item())
        _log("unet", step, plan.unet_steps, losses, curve, plan, started, on_progress)
    with torch.no_grad():
        for average, param in zip(ema, params):
            param.copy_(average)
    unet.eval()


def _log(stage, step, steps, losses, curve, plan: TrainingPlan, started, on_progress) -> None:
    if (step + 1) % plan.log_every and step + 1 != steps:
        return
    recent = losses[-plan.log_every:]
    curve.append((step + 1, sum(recent) / len(recent)))
    on_progress(f"{stage} step {step + 1}/{steps}  loss {curve[-1][1]:.4f}  ({time.perf_counter() - started:.0f} s)")
