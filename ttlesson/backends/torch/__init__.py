"""The diffusers pipeline through PyTorch, on CUDA when present, else the CPU.

The pipeline runs in the numerics ``precision`` names (``precision``: float32, bfloat16 + channels-last,
float16, or OpenVINO for the UNet and VAE decoder), with the frame's scheduler, and encodes each distinct prompt
once: a storyboard that repeats a prompt, or a prompt box, does not run the text encoder again.
A keyframe walk's in-between (``ttlesson.walk``) gets its starting latents and text embeddings interpolated in
float32 on the CPU, then cast to the pipeline's device and dtype; a keyframe is made exactly as without a walk.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from ... import walk
from ...errors import BackendUnavailableError
from ...models import ModelSpec, load_pipeline, schedulers
from ..base import Backend, FrameRequest, StepCallback
from . import precision as accel
from .memory import check_fits

PROMPT_CACHE_SIZE = 64


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, spec: ModelSpec, device: str | None = None, precision: str = "auto",
                 compile: bool = False):
        super().__init__(spec)
        self._device_name = device  # None: CUDA when available, else CPU
        self._torch_device = None
        self._requested = (precision, compile)
        self._precision: str | None = None
        self.pipe: Any = None  # the diffusers pipeline (its UNet and VAE decoder OpenVINO's, for openvino)
        self._shipped_scheduler = None
        self._prompts: OrderedDict = OrderedDict()
        self._sizes_checked: set[tuple[int, int, bool]] = set()

    @property
    def precision(self) -> str:
        """The numerics its frames are made with (``precision``), settled without loading the model."""
        if self._precision is None:
            requested, compile = self._requested
            if requested in accel.PRECISION_CHOICES:
                self._precision = accel.resolve_precision(requested, self.spec, self._resolved_device().type,
                                                          compile=compile)
            else:  # already resolved by the caller (render settles it before planning)
                self._precision = requested
        return self._precision

    @property
    def device(self) -> str:
        import torch

        device = self._resolved_device()
        if device.type == "cuda":
            return f"{device} ({torch.cuda.get_device_name(device)})"
        return str(device)

    def load(self) -> None:
        if self.pipe is not None:
            return
        device = self._resolved_device()
        pipe = load_pipeline(self.spec)  # first: its errors (no weights, no network) are the ones to show
        cache_key = self._cache_key() if self.precision.startswith("openvino") else None
        self.pipe = accel.prepare_pipeline(pipe, self.precision, device, cache_key=cache_key, spec=self.spec)
        self._shipped_scheduler = self.pipe.scheduler

    def check_request(self, request: FrameRequest) -> None:
        """Refuse a frame too big for this machine's memory: before the model loads, and after (a loaded backend
        serving many requests, as a render service's actor does, is asked for sizes it has not made before)."""
        size = (request.width, request.height, self.pipe is not None)
        if size not in self._sizes_checked:  # once per size: the estimate reads the model's files
            check_fits(self.spec, request.width, request.height, self._device_name, loaded=self.pipe is not None)
            self._sizes_checked.add(size)

    def adopt(self, pipe, cache_key: str | None = None, label: str | None = None) -> None:
        """Use an already built float32 CPU pipeline (``ttlesson bench --arch-only``) instead of loading one."""
        self.pipe = accel.prepare_pipeline(pipe, self.precision, self._resolved_device(), cache_key=cache_key,
                                           spec=self.spec, label=label)
        self._shipped_scheduler = self.pipe.scheduler

    def generate(self, request: FrameRequest, on_step: StepCallback | None = None):
        import torch

        if self.pipe is None:
            self.load()

        def step_end(pipe, step, timestep, callback_kwargs):
            if on_step is not None:
                # Counted in the steps asked for: PNDM makes one UNet pass more than that (its first step takes
                # two passes), so the passes before the first whole step report nothing and the last is step N/N.
                extra = max(0, len(pipe.scheduler.timesteps) - request.steps)
                if step + 1 > extra:
                    on_step(step + 1 - extra, request.steps)
            return callback_kwargs

        self.pipe.scheduler = schedulers.build(schedulers.resolve(request.scheduler, self.spec),
                                               self._shipped_scheduler)
        accel.vae_tiling_for(self.pipe, request.width, request.height)
        # Noise comes from a CPU generator, so a seed gives the same starting latents on any device.
        generator = torch.Generator("cpu").manual_seed(request.seed)
        prompts = self._prompt_arguments(request)
        if walk.needs_own_noise(request):
            prompts["latents"] = self._start_latents(request, prompts["prompt_embeds"].dtype)
        with torch.inference_mode():
            result = self.pipe(
                **prompts,
                num_inference_steps=request.steps,
                guidance_scale=request.guidance,
                width=request.width,
                height=request.height,
                generator=generator,
                callback_on_step_end=step_end,
                output_type="pil",
            )
        return result.images[0]

    def _prompt_arguments(self, request: FrameRequest) -> dict:
        """The prompts, or for SD 1.x their embeddings, made once per distinct (prompt, negative prompt); for a
        walk's in-between, the two keyframes' embeddings lerped (``ttlesson.walk``)."""
        if not hasattr(self.pipe, "encode_prompt") or self.spec.family != "sd1":
            return {"prompt": request.prompt, "negative_prompt": request.negative_prompt}
        guided = request.guidance > 1
        positive, negative = walk.blend_embeddings(request, lambda text, negative: self._encoded(text, negative,
                                                                                                guided))
        like = self._encoded(request.prompt, request.negative_prompt, guided)[0]
        return {"prompt_embeds": positive.to(like.device, like.dtype),
                "negative_prompt_embeds": None if negative is None else negative.to(like.device, like.dtype)}

    def _encoded(self, prompt: str, negative_prompt: str | None, guided: bool) -> tuple:
        key = (prompt, negative_prompt, guided)
        if key not in self._prompts:
            self._prompts[key] = self.pipe.encode_prompt(prompt, self._resolved_device(), 1, guided, negative_prompt)
            while len(self._prompts) > PROMPT_CACHE_SIZE:
                self._prompts.popitem(last=False)
        self._prompts.move_to_end(key)
        return self._prompts[key]

    def _start_latents(self, request: FrameRequest, dtype):
        """The frame's starting noise (unit variance, as the pipeline scales it itself) on the pipeline's device."""
        channels = self.pipe.unet.config.in_channels
        factor = self.pipe.vae_scale_factor
        shape = (1, channels, request.height // factor, request.width // factor)
        return walk.start_noise(request, shape).to(self._resolved_device(), dtype)

    def _cache_key(self) -> str:
        """What identifies the model's weights, for caching a converted copy (OpenVINO)."""
        from ...models import local_folder

        folder = local_folder(self.spec).resolve()
        stamps = sorted((str(path.relative_to(folder)), path.stat().st_size, path.stat().st_mtime_ns)
                        for pattern in ("*.safetensors", "*.bin") for path in folder.rglob(pattern))
        return f"{self.spec.name}|{folder}|{stamps}"

    def close(self) -> None:
        if self.pipe is None:
            return
        import torch

        on_cuda = self._resolved_device().type == "cuda"
        self.pipe = None
        self._prompts.clear()
        if on_cuda:
            torch.cuda.empty_cache()

    def count_tokens(self, text: str) -> int:
        self.load()
        return len(self.pipe.tokenizer(text, truncation=False).input_ids)

    @property
    def max_prompt_tokens(self) -> int:
        tokenizer = getattr(self.pipe, "tokenizer", None)
        return getattr(tokenizer, "model_max_length", 77) if tokenizer is not None else 77

    def _resolved_device(self):
        if self._torch_device is None:
            self._torch_device = _torch_device(self._device_name)
        return self._torch_device


def _torch_device(name: str | None):
    """The torch device for ``name`` (None: CUDA when present, else CPU), checked to exist on this machine."""
    import torch

    if name is None:
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise BackendUnavailableError(f"--device {name!r} is not a torch device; use cpu, cuda or cuda:N.") from err
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise BackendUnavailableError(f"--device {name!r} is not supported by ttlesson; use cpu, cuda or cuda:N.")
    if not torch.cuda.is_available():
        raise BackendUnavailableError(f"--device {name} asks for a CUDA GPU, but torch sees none on this machine; "
                                      "use --device cpu, or leave --device out to pick automatically.")
    index = torch.cuda.current_device() if device.index is None else device.index
    if index >= torch.cuda.device_count():
        raise BackendUnavailableError(f"--device {name} does not exist: torch sees {torch.cuda.device_count()} "
                                      "GPU(s), numbered from cuda:0.")
    return torch.device("cuda", index)
