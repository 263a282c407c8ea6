"""Real-size speed without a download: ``ttlesson bench --arch-only``.

1. measure this machine's matmul peak (float32, and bfloat16 where the CPU has it natively): the roofline;
2. build the full-size architecture from its published configs with seeded random weights (``ttlesson.bench.models``)
   and count the FLOPs of one guided UNet step with torch's FlopCounterMode (on the meta device: no time);
3. load ttlesson's path (the precision ``auto`` picks here, through the torch backend ttlesson renders with)
   and, with ``compare="diffusers-default"``, the plain diffusers pipeline with its defaults, on the same weights;
4. make the same frame with each, alternating which goes first, timing the text encoder, every UNet step and the
   VAE decode through hooks; the first frame of each is the warm-up;
5. report load, warm-up and steady seconds per step and per frame, the UNet step's achieved GFLOP/s against the
   roofline, the speed-up, and how far ttlesson's numerics are from float32: the relative error of the first
   UNet output and the PSNR of the finished frame.

Timings on a machine other work shares are noisy: the comparison is within one run, alternating, with medians.
"""

from __future__ import annotations

import copy
import math
import platform
import statistics
import time
from dataclasses import dataclass, field

from ..backends.torch.memory import meminfo
from ..env import __version__
from ..errors import TTLessonError
from ..presenting import Presentable

COMPARE_CHOICES = ("diffusers-default",)
PROMPT = "Tenstorrent pavilion at 1964 World's Fair, futuristic dome architecture, Kodachrome photo"


@dataclass
class StackTimes:
    name: str
    precision: str
    load_seconds: float = 0.0
    warmup_frame_seconds: float = 0.0
    frame_seconds: list[float] = field(default_factory=list)  # steady frames
    text_encoder_seconds: list[float] = field(default_factory=list)  # steady frames, per call
    unet_step_seconds: list[float] = field(default_factory=list)  # steady frames, per UNet call (batch 2)
    vae_decode_seconds: list[float] = field(default_factory=list)
    unet_calls_per_frame: int = 0
    text_encoder_calls_per_frame: float = 0.0

    @property
    def unet_step(self) -> float:
        return _median(self.unet_step_seconds)

    def summary_row(self) -> dict:
        return {"stack": self.name, "precision": self.precision, "load_s": round(self.load_seconds, 2),
                "warmup_frame_s": round(self.warmup_frame_seconds, 2),
                "frame_s": round(_median(self.frame_seconds), 2), "unet_step_s": round(self.unet_step, 3),
                "text_encoder_s": round(_median(self.text_encoder_seconds), 3),
                "vae_decode_s": round(_median(self.vae_decode_seconds), 3)}


@dataclass
class ArchBenchResult(Presentable):
    model: str
    width: int
    height: int
    steps: int
    scheduler: str
    frames_per_stack: int
    machine: dict
    matmul_peak_gflops: dict  # {"float32": x, "bfloat16": y or None}
    unet_flops_per_step: int  # one guided step: batch 2 (conditional and unconditional)
    parameters: dict
    stacks: list[StackTimes]
    speedup_unet_step: float | None = None  # diffusers default's median UNet step / ttlesson's
    speedup_frame: float | None = None
    achieved_gflops: dict = field(default_factory=dict)  # per stack
    roofline_fraction: dict = field(default_factory=dict)  # per stack: against the peak of the dtype it computes in
    quality: dict = field(default_factory=dict)  # ttlesson vs float32: UNet relative error, frame PSNR
    estimated_frame_seconds: dict = field(default_factory=dict)  # per stack, at the model's own step count
    notes: list[str] = field(default_factory=list)
    ttlesson: str = __version__
    date: str = ""

    def __str__(self) -> str:
        lines = [f"{self.model} architecture (published configs, random weights), {self.width}×{self.height}, "
                 f"{self.steps} steps ({self.scheduler}), {self.frames_per_stack} frames per stack, on "
                 f"{self.machine.get('cpu', '?')} with {self.machine.get('threads')} threads",
                 "matmul peak here: " + ", ".join(f"{k} {v:.0f} GFLOP/s" if v else f"{k} not native"
                                                  for k, v in self.matmul_peak_gflops.items()),
                 f"one guided UNet step: {self.unet_flops_per_step / 1e12:.2f} TFLOP"]
        for stack in self.stacks:
            row = stack.summary_row()
            lines.append(f"  {row['stack']} [{row['precision']}]: load {row['load_s']} s, warm-up frame "
                         f"{row['warmup_frame_s']} s, then {row['frame_s']} s/frame: text encoder "
                         f"{row['text_encoder_s']} s, UNet {row['unet_step_s']} s/step "
                         f"({self.achieved_gflops.get(stack.name, 0):.0f} GFLOP/s, "
                         f"{100 * self.roofline_fraction.get(stack.name, 0):.0f}% of its roofline), "
                         f"VAE decode {row['vae_decode_s']} s; about "
                         f"{self.estimated_frame_seconds.get(stack.name, 0) / 60:.1f} min for a "
                         f"{_model_steps(self.model)}-step frame")
        if self.speedup_unet_step:
            lines.append(f"ttlesson vs diffusers default: UNet step {self.speedup_unet_step:.2f}×, frame "
                         f"{self.speedup_frame:.2f}×")
        if self.quality:
            lines.append(f"numerics vs float32: UNet output relative error {self.quality['unet_relative_error']:.2e} "
                         f"(max-normalised {self.quality['unet_max_relative_error']:.2e}), frame PSNR "
                         f"{self.quality['frame_psnr_db']:.1f} dB")
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)


def run(model: str = "sd14", size: int | str | None = None, steps: int = 2, frames: int = 2,
        compare: str | None = None, precision: str = "auto", scheduler: str | None = None,
        seed: int = 0, on_line=None) -> ArchBenchResult:
    """Time ttlesson's path (and with ``compare``, diffusers' default) on the full-size architecture."""
    from ..inputs import parse_size
    from .models import published_config

    say = on_line or (lambda text: None)
    config = published_config(model)
    if compare not in (None, *COMPARE_CHOICES):
        raise TTLessonError(f"--compare {compare!r} is not known; use --compare diffusers-default.")
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 2:
        raise TTLessonError(f"--frames {frames!r} is too few: the first frame of each stack is its warm-up, so "
                            "give 2 or more.")
    native = config["vae"]["sample_size"]
    width, height = parse_size(size) if size is not None else (native, native)
    if model == "sd35-large":
        return _run_sd35(config, width, height, steps, frames, compare, seed, say)
    return _run_sd14(width, height, steps, frames, compare, precision, scheduler, seed, say)


def _run_sd14(width, height, steps, frames, compare, precision, scheduler, seed, say) -> ArchBenchResult:
    import torch

    from ..backends import FrameRequest
    from ..backends.torch import TorchBackend
    from ..backends.torch import precision as accel
    from ..models import REGISTRY, schedulers
    from . import models as arch

    spec = REGISTRY["sd14"]
    scheduler = schedulers.resolve(scheduler, spec)
    threads = torch.get_num_threads()
    say("measuring this machine's matmul peak")
    peaks = matmul_peaks()
    say("building SD 1.4 from its published configs with random weights")
    flops = unet_flops(arch.published_config("sd14")["unet"], 2, height // 8, width // 8, 77, 768)
    reference = arch.build_sd14(seed)
    resolved = accel.resolve_precision(precision, spec, "cpu")

    started = time.perf_counter()
    backend = TorchBackend(spec, device="cpu", precision=resolved)
    backend.adopt(_pipeline_for(reference, resolved), cache_key=_arch_cache_key("sd14", seed),
                  label="the SD 1.4 architecture")
    ours = StackTimes(f"ttlesson ({resolved})", resolved, load_seconds=time.perf_counter() - started)
    request = FrameRequest(PROMPT, seed, steps, 7.5, width, height, None, scheduler)
    stacks = [(ours, _Hooks(backend.pipe), lambda: backend.generate(request))]
    if compare:
        started = time.perf_counter()
        plain = reference  # diffusers' defaults: float32, its own attention processor, PNDM
        plain.scheduler = schedulers.build(scheduler, plain.scheduler)
        theirs = StackTimes("diffusers default", "float32", load_seconds=time.perf_counter() - started)

        def plain_frame():
            generator = torch.Generator("cpu").manual_seed(seed)
            return plain(prompt=PROMPT, num_inference_steps=steps, guidance_scale=7.5, width=width, height=height,
                         generator=generator).images[0]

        stacks.append((theirs, _Hooks(plain), plain_frame))
    images = _alternate(stacks, frames, say)
    peaks = {name: max(filter(None, (value, again))) if value or again else None
             for (name, value), again in zip(peaks.items(), matmul_peaks().values())}  # best of start and end
    result = ArchBenchResult(model="sd14", width=width, height=height, steps=steps, scheduler=scheduler,
                             frames_per_stack=frames, machine=_machine(threads), matmul_peak_gflops=peaks,
                             unet_flops_per_step=flops, parameters=arch.published_config("sd14")["parameters"],
                             stacks=[stack for stack, _, _ in stacks], date=time.strftime("%Y-%m-%d"))
    _figures(result, peaks, flops)
    if compare:
        first = [hooks.first_unet_output for _, hooks, _ in stacks]
        result.quality = {"unet_relative_error": _relative_error(first[0], first[1]),
                          "unet_max_relative_error": _max_relative_error(first[0], first[1]),
                          "frame_psnr_db": _psnr(images[0], images[1]),
                          "against": "diffusers default (float32) on the same weights, prompt and seed"}
    if not peaks.get("bfloat16"):
        result.notes.append("this CPU has no native bfloat16 (AVX512-BF16/AMX), so the roofline is float32's")
    return result


def _pipeline_for(reference, precision: str):
    """ttlesson's copy of the reference pipeline: sharing its float32 weights where the precision keeps them."""
    from ..backends.torch import precision as accel

    deep = accel.torch_dtype_name(precision) != "float32" or precision.endswith(accel.COMPILED)
    # A shallow copy shares the weights but not the module objects, so the timing hooks of one stack stay its own.
    components = {name: (copy.deepcopy(module) if deep else copy.copy(module)) if hasattr(module, "parameters")
                  else module for name, module in reference.components.items()}
    pipe = type(reference)(**components)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _arch_cache_key(name: str, seed: int) -> str:
    from importlib.metadata import version

    return f"arch|{name}|seed{seed}|torch {version('torch')}|diffusers {version('diffusers')}|" \
           f"transformers {version('transformers')}"


def _alternate(stacks, frames: int, say) -> list:
    """Each stack makes ``frames`` frames, taking turns, the first of each going first in alternate rounds."""
    images = [None] * len(stacks)
    for round_ in range(frames):
        order = list(range(len(stacks)))
        if round_ % 2:
            order.reverse()
        for index in order:
            stack, hooks, make = stacks[index]
            say(f"frame {round_ + 1}/{frames}: {stack.name}")
            hooks.reset()
            started = time.perf_counter()
            image = make()
            seconds = time.perf_counter() - started
            say(f"  {seconds:.1f} s: UNet {', '.join(f'{t:.1f}' for t in hooks.unet)} s, VAE decode "
                f"{sum(hooks.vae):.1f} s, text encoder {sum(hooks.text_encoder):.2f} s")
            if round_ == 0:
                stack.warmup_frame_seconds = seconds
                images[index] = image
                stack.unet_calls_per_frame = len(hooks.unet)
                continue
            stack.frame_seconds.append(seconds)
            stack.text_encoder_seconds += hooks.text_encoder
            stack.unet_step_seconds += hooks.unet
            stack.vae_decode_seconds += hooks.vae
            stack.text_encoder_calls_per_frame = len(stack.text_encoder_seconds) / len(stack.frame_seconds)
    return images


class _Hooks:
    """Times the text encoder, UNet and VAE decoder calls of a diffusers pipeline; keeps the first UNet output."""

    def __init__(self, pipe):
        self.first_unet_output = None
        self.text_encoder: list[float] = []
        self.unet: list[float] = []
        self.vae: list[float] = []
        self._wrap(pipe.text_encoder, "forward", self.text_encoder)
        self._wrap(pipe.unet, "forward", self.unet, keep_first=True)
        self._wrap(pipe.vae, "decode", self.vae)

    def reset(self) -> None:
        for times in (self.text_encoder, self.unet, self.vae):
            times.clear()

    def _wrap(self, module, method: str, times: list, keep_first: bool = False) -> None:
        inner = getattr(module, method)

        def timed(*args, **kwargs):
            started = time.perf_counter()
            out = inner(*args, **kwargs)
            times.append(time.perf_counter() - started)
            if keep_first and self.first_unet_output is None:
                self.first_unet_output = (out[0] if isinstance(out, tuple) else out.sample).float().clone()
            return out

        setattr(module, method, timed)


def _figures(result: ArchBenchResult, peaks: dict, flops: int) -> None:
    steps = _model_steps(result.model)
    for stack in result.stacks:
        if not stack.unet_step:
            continue
        achieved = flops / stack.unet_step / 1e9
        result.achieved_gflops[stack.name] = round(achieved, 1)
        computes_in = "bfloat16" if "bf16" in stack.precision or "bfloat16" in stack.precision else "float32"
        peak = peaks.get(computes_in) or peaks.get("float32")
        result.roofline_fraction[stack.name] = round(achieved / peak, 3) if peak else None
        calls = steps + stack.unet_calls_per_frame - result.steps  # PNDM makes one UNet call more than its steps
        result.estimated_frame_seconds[stack.name] = round(
            _median(stack.text_encoder_seconds) * stack.text_encoder_calls_per_frame
            + stack.unet_step * calls + _median(stack.vae_decode_seconds), 1)
    if len(result.stacks) == 2 and result.stacks[0].unet_step:
        ours, theirs = result.stacks
        result.speedup_unet_step = round(theirs.unet_step / ours.unet_step, 3)
        result.speedup_frame = round(_median(theirs.frame_seconds) / _median(ours.frame_seconds), 3)


def _model_steps(model: str) -> int:
    from ..models import REGISTRY

    return REGISTRY[model].steps


# --- the roofline ------------------------------------------------------------------------------------------

def matmul_peaks(size: int = 2048, repeats: int = 5) -> dict:
    """GFLOP/s of the best of ``repeats`` square matmuls, float32 and (where native) bfloat16."""
    from ..backends.torch.precision import cpu_has_native_bf16

    peaks: dict[str, float | None] = {"float32": _matmul_gflops("float32", size, repeats)}
    peaks["bfloat16"] = _matmul_gflops("bfloat16", size, repeats) if cpu_has_native_bf16() else None
    return peaks


def _matmul_gflops(dtype_name: str, size: int, repeats: int) -> float:
    import torch

    dtype = getattr(torch, dtype_name)
    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    a @ b  # warm-up: thread pool and kernel selection
    best = math.inf
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - started)
    return round(2 * size ** 3 / best / 1e9, 1)


def unet_flops(unet_config: dict, batch: int, latent_height: int, latent_width: int, tokens: int,
               context_width: int) -> int:
    """FLOPs of one UNet call, counted by torch's FlopCounterMode on the meta device (shapes only)."""
    import torch
    from diffusers import UNet2DConditionModel
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        unet = UNet2DConditionModel(**{k: v for k, v in unet_config.items() if not k.startswith("_")})
        sample = torch.empty(batch, unet_config["in_channels"], latent_height, latent_width)
        context = torch.empty(batch, tokens, context_width)
        timestep = torch.empty(batch)
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            unet(sample, timestep, encoder_hidden_states=context)
    return int(counter.get_total_flops())


# --- numerics ------------------------------------------------------------------------------------------------

def _relative_error(ours, reference) -> float:
    return float((ours - reference).norm() / reference.norm())


def _max_relative_error(ours, reference) -> float:
    return float((ours - reference).abs().max() / reference.abs().max())


def _psnr(ours, reference) -> float:
    import numpy as np

    a = np.asarray(ours, dtype=np.float64)
    b = np.asarray(reference, dtype=np.float64)
    mse = float(np.mean((a - b) ** 2))
    return math.inf if mse == 0 else round(10 * math.log10(255 ** 2 / mse), 2)


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def _machine(threads: int) -> dict:
    import torch

    from ..backends.torch.precision import openvino_installed
    from ..machine import cpu_info
    from ..machine.compute import physical_cores

    cpu = cpu_info()
    return {"cpu": cpu.model, "cores": cpu.cores, "physical_cores": physical_cores(), "threads": threads,
            "bf16_flags": list(cpu.bf16_flags), "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "memory_gib": round(meminfo().get("MemTotal", 0) / 2 ** 30, 1), "python": platform.python_version(),
            "torch": torch.__version__, "openvino": _version("openvino") if openvino_installed() else None,
            "diffusers": _version("diffusers"), "load_average": _load_average()}


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def _load_average() -> list[float] | None:
    import os

    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return None


# --- SD 3.5 Large: the MMDiT and the VAE, where memory allows ------------------------------------------------

def _run_sd35(config, width, height, steps, frames, compare, seed, say) -> ArchBenchResult:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from . import models as arch

    if compare:
        raise TTLessonError("--compare runs diffusers' whole pipeline, which for sd35-large needs its three text "
                            "encoders (another 5 billion weights); leave --compare out with --model sd35-large.")
    needed = arch.bytes_needed("sd35-large", "bfloat16") + 3 * 2 ** 30  # weights, activations, the process
    available = arch.memory_available()
    if available and needed > available:
        raise TTLessonError(f"SD 3.5 Large's MMDiT needs about {needed / 2 ** 30:.0f} GiB in bfloat16 and this "
                            f"machine has {available / 2 ** 30:.0f} GiB available; free memory or use --model sd14.")
    threads = torch.get_num_threads()
    peaks = matmul_peaks()
    embeddings = config["text_embeddings"]
    latent = (2, config["transformer"]["in_channels"], height // 8, width // 8)
    inputs = lambda: dict(hidden_states=torch.randn(latent, dtype=torch.bfloat16),  # noqa: E731
                          encoder_hidden_states=torch.randn(2, embeddings["sequence"], embeddings["width"],
                                                            dtype=torch.bfloat16),
                          pooled_projections=torch.randn(2, embeddings["pooled"], dtype=torch.bfloat16),
                          timestep=torch.tensor([500.0, 500.0], dtype=torch.bfloat16), return_dict=False)
    with torch.device("meta"):
        meta = arch._modules("sd35-large", with_text_encoder=False)["transformer"].to(torch.bfloat16)
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            meta(**{k: v.to("meta") if hasattr(v, "to") else v for k, v in inputs().items()})
    flops = int(counter.get_total_flops())
    say("building SD 3.5 Large's MMDiT (bfloat16) and VAE with random weights")
    started = time.perf_counter()
    parts = arch.build_sd35_parts(seed)
    stack = StackTimes("ttlesson (bfloat16)", "bfloat16", load_seconds=time.perf_counter() - started)
    with torch.inference_mode():
        for round_ in range(frames):
            say(f"frame {round_ + 1}/{frames}")
            step_times = []
            frame_started = time.perf_counter()
            for _ in range(steps):
                started = time.perf_counter()
                parts["transformer"](**inputs())
                step_times.append(time.perf_counter() - started)
            started = time.perf_counter()
            parts["vae"].decode(torch.randn(1, latent[1], latent[2], latent[3]))
            decode = time.perf_counter() - started
            seconds = time.perf_counter() - frame_started
            if round_ == 0:
                stack.warmup_frame_seconds = seconds
                stack.unet_calls_per_frame = steps
                continue
            stack.frame_seconds.append(seconds)
            stack.unet_step_seconds += step_times
            stack.vae_decode_seconds.append(decode)
    result = ArchBenchResult(model="sd35-large", width=width, height=height, steps=steps,
                             scheduler="flow-match-euler", frames_per_stack=frames, machine=_machine(threads),
                             matmul_peak_gflops=peaks, unet_flops_per_step=flops, parameters=config["parameters"],
                             stacks=[stack], date=time.strftime("%Y-%m-%d"),
                             notes=["the text encoders are not built: random prompt embeddings of their shape"])
    _figures(result, peaks, flops)
    return result
