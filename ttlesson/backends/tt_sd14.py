"""Stable Diffusion 1.4 on one Tenstorrent chip, built the way tt-metal's demo builds it, fed one frame at a time.

Host (torch): the CLIP tokenizer and text encoder, and each frame's initial latents from its own seed.
Chip (ttnn, tt-metal's package): UNet, PNDM scheduler and VAE decoder; ``compile_trace_sd`` runs the whole
denoising loop once (compiling kernels) and then captures it as one Metal trace. Its inputs are two device
buffers, the text embeddings ``[2, 96, 768]`` and the initial latents ``[1, 4, 64, 64]``; its output buffer holds
the ``[1, 3, 512, 512]`` image in [-1, 1].

Per frame: copy the frame's embeddings and latents into the input buffers, execute the trace without
blocking, read the output. Unlike the demo, every frame starts from its own noise, and the trace is released
only when the pipeline is done with it (or re-captured for another step count), never between frames.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..models import ModelSpec, load_pipeline
from .tt_device import Chip

SIZE = 512
LATENT_SHAPE = (1, 4, 64, 64)  # 512 / 8: the package hard-wires 64×64 latents
EMBEDDING_ROWS = 96  # 77 CLIP tokens padded to a multiple of the 32-row tile, as the trace's input buffer is
UNET_BATCH = 2  # unconditional + conditional, for classifier-free guidance
MIN_STEPS = 4  # tt-metal's PNDM scheduler refuses fewer


@dataclass
class HostModels:
    """The torch side: text encoding runs here; the UNet and VAE are only read for their weights."""

    tokenizer: object
    text_encoder: object
    unet: object
    vae: object


@dataclass
class Trace:
    """A captured loop and the buffers it reads and writes; valid until released."""

    id: object
    steps: int
    guidance: float
    embeddings: object  # device buffer the trace reads the text embeddings from
    output: object  # device buffer the trace writes the image to
    time_embeddings: list = field(default_factory=list)


def load_host_models(spec: ModelSpec) -> HostModels:
    pipe = load_pipeline(spec)
    return HostModels(pipe.tokenizer, pipe.text_encoder, pipe.unet, pipe.vae)


def text_embeddings(host: HostModels, prompt: str, negative_prompt: str | None):
    """``[2, 96, hidden]``: the negative (or empty) prompt's CLIP embeddings, then the prompt's, zero-padded."""
    import torch

    def encode(text: str):
        ids = host.tokenizer([text], padding="max_length", max_length=host.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids
        with torch.inference_mode():
            return host.text_encoder(ids)[0]

    both = torch.cat([encode(negative_prompt or ""), encode(prompt)])
    return torch.nn.functional.pad(both, (0, 0, 0, EMBEDDING_ROWS - both.shape[1]))


def initial_latents(seed: int):
    """The frame's starting noise: the same CPU-generator draw the torch backend makes for this seed."""
    import torch

    return torch.randn(LATENT_SHAPE, generator=torch.Generator("cpu").manual_seed(seed))


def frame_inputs(host: HostModels, request) -> tuple:
    """The trace's two inputs for a frame request: text embeddings and initial latents; for a keyframe walk's
    in-between (``ttlesson.walk``) both interpolated in float32 on the CPU, so a walk needs no new trace."""
    from .. import walk

    (embeddings,) = walk.blend_embeddings(request, lambda prompt, negative: (text_embeddings(host, prompt, negative),))
    if walk.needs_own_noise(request):
        return embeddings, walk.start_noise(request, LATENT_SHAPE)
    return embeddings, initial_latents(request.seed)


def to_image(output):
    """The trace's ``[1, 3, 512, 512]`` output in [-1, 1] as an RGB PIL image, rounded as the demo does."""
    import torch
    from PIL import Image

    pixels = (output.float() / 2 + 0.5).clamp(0, 1)[0].permute(1, 2, 0)
    return Image.fromarray((pixels * 255).round().to(torch.uint8).numpy())


def time_embedding(unet, timestep):
    """The UNet's sinusoidal time projection for one step, batch 2, in the layout the device UNet expects."""
    import torch

    with torch.inference_mode():
        projected = unet.time_proj(timestep[None].expand(UNET_BATCH))
    return projected.unsqueeze(0).unsqueeze(0).permute(2, 0, 1, 3)


class ChipPipeline:
    """One chip's SD 1.4: device models, the latents input buffer, and at most one live trace."""

    def __init__(self, ttnn, sd, chip: Chip, host: HostModels):
        self.ttnn = ttnn
        self.sd = sd
        self.chip = chip
        self.host = host
        self.trace: Trace | None = None
        self.scheduler = sd.TtPNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                            num_train_timesteps=1000, skip_prk_steps=True, steps_offset=1,
                                            device=chip.mesh)
        parameters = ttnn.model_preprocessing.preprocess_model_parameters(
            initialize_model=lambda: host.unet, custom_preprocessor=sd.custom_preprocessor, device=chip.mesh)
        self.unet = sd.UNet2DConditionModel(chip.mesh, parameters, UNET_BATCH, LATENT_SHAPE[2], LATENT_SHAPE[3])
        self.vae = sd.Vae(torch_vae=host.vae, device=chip.mesh)
        self.latents = ttnn.allocate_tensor_on_device(ttnn.Shape(list(LATENT_SHAPE)), ttnn.bfloat16,
                                                      ttnn.TILE_LAYOUT, chip.mesh, ttnn.DRAM_MEMORY_CONFIG)

    def has_trace_for(self, steps: int, guidance: float) -> bool:
        return self.trace is not None and (self.trace.steps, self.trace.guidance) == (steps, guidance)

    def capture(self, steps: int, guidance: float) -> None:
        """Compile and capture the loop for ``steps`` and ``guidance`` (both are baked into the trace)."""
        self.release()
        ttnn = self.ttnn
        self.scheduler.set_timesteps(steps)
        time_embeddings = [ttnn.from_torch(time_embedding(self.host.unet, t), dtype=ttnn.bfloat16,
                                           layout=ttnn.TILE_LAYOUT, device=self.chip.mesh)
                           for t in self.scheduler.timesteps]
        # The compile run reads the latents buffer: give it defined values rather than whatever DRAM held.
        self._copy_in(initial_latents(0), self.latents)
        embeddings, output, trace_id = self.sd.compile_trace_sd(
            self.chip.mesh, self.unet, self.host.unet.config, self.vae, self.latents, time_embeddings,
            self.scheduler.timesteps.tolist(), guidance, self.scheduler, steps)
        self.trace = Trace(trace_id, steps, guidance, embeddings, output, time_embeddings)

    def submit(self, embeddings, latents) -> None:
        """Copy one frame's inputs into the trace's buffers and start the trace; returns at once."""
        if self.trace is None:
            raise ValueError("ChipPipeline.submit needs a captured trace: call capture first")
        self._copy_in(embeddings, self.trace.embeddings)
        self._copy_in(latents, self.latents)
        self.ttnn.execute_trace(self.chip.mesh, self.trace.id, cq_id=0, blocking=False)

    def collect(self):
        """Wait for this chip's trace to finish and return its output as a torch tensor."""
        output = self.ttnn.to_torch(self.trace.output.cpu(blocking=True))
        self.ttnn.synchronize_device(self.chip.mesh)
        return output

    def release(self) -> None:
        """Release the trace (after any execution of it still running) and free its buffers; after this no
        execution can refer to it."""
        trace, self.trace = self.trace, None
        if trace is None:
            return
        self.ttnn.synchronize_device(self.chip.mesh)
        self.ttnn.release_trace(self.chip.mesh, trace.id)
        for tensor in [trace.embeddings, trace.output, *trace.time_embeddings]:
            self.ttnn.deallocate(tensor)

    def _copy_in(self, values, device_buffer) -> None:
        host = self.ttnn.from_torch(values, dtype=self.ttnn.bfloat16, layout=self.ttnn.TILE_LAYOUT)
        self.ttnn.copy_host_to_device_tensor(host, device_buffer, cq_id=0)
