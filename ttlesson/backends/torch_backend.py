"""The diffusers pipeline through PyTorch, on CUDA when present, else the CPU."""

from __future__ import annotations

from ..errors import BackendUnavailableError
from ..models import ModelSpec, load_pipeline
from . import Backend, FrameRequest, StepCallback


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, spec: ModelSpec, device: str | None = None):
        super().__init__(spec)
        self._device_name = device  # None: CUDA when available, else CPU
        self._torch_device = None
        self.pipe = None

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
        self.pipe = load_pipeline(self.spec).to(device=device, dtype=self._dtype(device))

    def generate(self, request: FrameRequest, on_step: StepCallback | None = None):
        import torch

        if self.pipe is None:
            self.load()

        def step_end(pipe, step, timestep, callback_kwargs):
            if on_step is not None:
                # Counted in the steps asked for: PNDM makes one UNet pass more than that (its first step takes
                # two), so its last pass is reported as the last step again rather than as "step 11/10".
                on_step(min(step + 1, request.steps), request.steps)
            return callback_kwargs

        # Noise comes from a CPU generator, so a seed gives the same starting latents on any device.
        generator = torch.Generator("cpu").manual_seed(request.seed)
        with torch.inference_mode():
            result = self.pipe(
                prompt=request.prompt,
                negative_prompt=request.negative_prompt,
                num_inference_steps=request.steps,
                guidance_scale=request.guidance,
                width=request.width,
                height=request.height,
                generator=generator,
                callback_on_step_end=step_end,
                output_type="pil",
            )
        return result.images[0]

    def close(self) -> None:
        if self.pipe is None:
            return
        import torch

        on_cuda = self._resolved_device().type == "cuda"
        self.pipe = None
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

    def _dtype(self, device):
        import torch

        if device.type != "cuda" or self.spec.name == "tiny":
            return torch.float32
        return torch.bfloat16 if self.spec.family == "sd3" else torch.float16


def _torch_device(name: str | None):
    """The torch device for ``name`` (None: CUDA when present, else CPU), checked to exist on this machine."""
    import torch

    if name is None:
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise BackendUnavailableError(f"--device {name!r} is not a torch device; use cpu, cuda or cuda:N.") from None
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
