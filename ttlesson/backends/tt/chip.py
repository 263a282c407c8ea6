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

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ...errors import BackendUnavailableError
from ...models import ModelSpec, load_pipeline
from .device import Chip

if TYPE_CHECKING:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

SIZE = 512
LATENT_SHAPE = (1, 4, 64, 64)  # 512 / 8: the package hard-wires 64×64 latents
EMBEDDING_ROWS = 96  # 77 CLIP tokens padded to a multiple of the 32-row tile, as the trace's input buffer is
UNET_BATCH = 2  # unconditional + conditional, for classifier-free guidance
MIN_STEPS = 4  # tt-metal's PNDM scheduler refuses fewer


@dataclass
class HostModels:
    """The torch side: text encoding runs here; the UNet and VAE are only read for their weights."""

    tokenizer: CLIPTokenizer
    text_encoder: CLIPTextModel
    unet: UNet2DConditionModel
    vae: AutoencoderKL


@dataclass
class Trace:
    """A captured loop and the buffers it reads and writes; valid until released."""

    id: object
    steps: int
    guidance: float
    embeddings: object  # device buffer the trace reads the text embeddings from
    output: Any  # device buffer the trace writes the image to (a ttnn tensor)
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
    from ... import walk

    (embeddings,) = walk.blend_embeddings(request, lambda prompt, negative: (text_embeddings(host, prompt, negative),))
    if walk.needs_own_noise(request):
        return embeddings, walk.start_noise(request, LATENT_SHAPE)
    return embeddings, initial_latents(request.seed)


def to_image(output):
    """The trace's ``[1, 3, 512, 512]`` output in [-1, 1] as an RGB PIL image, computed exactly as the demo does.

    ttnn hands the output back as bfloat16, and the demo scales and clamps it in bfloat16 before converting to
    float and rounding to 8 bits. Doing the same (rather than converting to float first, which changes about one
    pixel in five by one level) makes a frame bit-identical to the demo's own image of the same prompt and seed,
    which is what ``ttlesson check-tt`` compares against.
    """
    import torch
    from PIL import Image

    pixels = (output / 2 + 0.5).clamp(0, 1).float()[0].permute(1, 2, 0)
    return Image.fromarray((pixels * 255).round().to(torch.uint8).numpy())


def allocate_latents(ttnn, mesh):
    """The device buffer the traced loop reads its starting noise from (bf16, tile layout, DRAM)."""
    return ttnn.allocate_tensor_on_device(ttnn.Shape(list(LATENT_SHAPE)), ttnn.bfloat16, ttnn.TILE_LAYOUT, mesh,
                                          ttnn.DRAM_MEMORY_CONFIG)


def copy_in(ttnn, values, device_buffer, what: str) -> None:
    """Copy a torch tensor into a device buffer of the same shape (as bf16 tiles), refusing a shape it cannot take.

    ttnn itself refuses a host tensor of another shape, dtype or layout with a TT_FATAL; checking the shape here
    turns the likeliest cause (a text encoder that is not SD 1.4's) into a sentence that says so.
    """
    wanted = tuple(int(size) for size in device_buffer.shape)
    if tuple(values.shape) != wanted:
        raise BackendUnavailableError(f"The {what} are {list(values.shape)} but tt-metal's SD 1.4 trace reads "
                                      f"{list(wanted)}; the tt backend runs CompVis/stable-diffusion-v1-4's own text "
                                      "encoder and latents only (use --backend torch for other models).")
    host = ttnn.from_torch(values, dtype=ttnn.bfloat16, layout=ttnn.TILE_LAYOUT)
    ttnn.copy_host_to_device_tensor(host, device_buffer, cq_id=0)


@dataclass
class CaptureWatch:
    """The captures a block began and has not ended, and when the last one began and ended (perf_counter)."""

    open: list = field(default_factory=list)  # (device, trace id)
    began: float | None = None
    ended: float | None = None


@contextmanager
def captures_ended_on_failure(ttnn, mesh) -> Iterator[CaptureWatch]:
    """If the block fails between ``begin_trace_capture`` and ``end_trace_capture`` (tt-metal's
    ``compile_trace_sd`` calls both), end the open capture and release it, so the device is not closed mid-capture.

    tt-metal's code calls ``ttnn.begin_trace_capture`` through the module, so watching those two names on the
    module for the length of the block sees every capture it starts; the watch also tells when the compile run
    ended (the capture began) and when the capture ended.
    """
    watch = CaptureWatch()
    begin, end = ttnn.begin_trace_capture, ttnn.end_trace_capture

    def watched_begin(device, *args, **kwargs):
        watch.began = time.perf_counter()
        trace_id = begin(device, *args, **kwargs)
        watch.open.append((device, trace_id))
        return trace_id

    def watched_end(device, trace_id, *args, **kwargs):
        end(device, trace_id, *args, **kwargs)
        watch.ended = time.perf_counter()
        watch.open[:] = [(d, t) for d, t in watch.open if t is not trace_id and t != trace_id]

    ttnn.begin_trace_capture, ttnn.end_trace_capture = watched_begin, watched_end
    try:
        yield watch
    except BaseException:
        for device, trace_id in reversed(watch.open):
            _quietly(end, device, trace_id, cq_id=0)
            _quietly(ttnn.release_trace, device, trace_id)
        raise
    finally:
        ttnn.begin_trace_capture, ttnn.end_trace_capture = begin, end


def _quietly(action, *args, **kwargs) -> None:
    try:
        action(*args, **kwargs)
    except Exception:  # the failure that got us here is the one to report
        pass


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
        self.compile_seconds = 0.0  # the last capture's compile run (the whole loop once, kernels compiled)
        self.capture_seconds = 0.0  # and its trace capture
        self.scheduler = sd.TtPNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                            num_train_timesteps=1000, skip_prk_steps=True, steps_offset=1,
                                            device=chip.mesh)
        parameters = ttnn.model_preprocessing.preprocess_model_parameters(
            initialize_model=lambda: host.unet, custom_preprocessor=sd.custom_preprocessor, device=chip.mesh)
        self.unet = sd.UNet2DConditionModel(chip.mesh, parameters, UNET_BATCH, LATENT_SHAPE[2], LATENT_SHAPE[3])
        self.vae = sd.Vae(torch_vae=host.vae, device=chip.mesh)
        self.latents = allocate_latents(ttnn, chip.mesh)

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
        copy_in(ttnn, initial_latents(0), self.latents, "starting latents")
        started = time.perf_counter()
        with captures_ended_on_failure(ttnn, self.chip.mesh) as watch:
            embeddings, output, trace_id = self.sd.compile_trace_sd(
                self.chip.mesh, self.unet, self.host.unet.config, self.vae, self.latents, time_embeddings,
                self.scheduler.timesteps.tolist(), guidance, self.scheduler, steps)
        finished = time.perf_counter()
        self.compile_seconds = (watch.began or finished) - started
        self.capture_seconds = finished - (watch.began or finished)
        self.trace = Trace(trace_id, steps, guidance, embeddings, output, time_embeddings)

    def submit(self, embeddings, latents) -> None:
        """Copy one frame's inputs into the trace's buffers and start the trace; returns at once."""
        if self.trace is None:
            raise ValueError("ChipPipeline.submit needs a captured trace: call capture first")
        copy_in(self.ttnn, embeddings, self.trace.embeddings, "text embeddings")
        copy_in(self.ttnn, latents, self.latents, "starting latents")
        self.ttnn.execute_trace(self.chip.mesh, self.trace.id, cq_id=0, blocking=False)

    def collect(self):
        """Wait for this chip's trace to finish and return its output as a torch tensor."""
        assert self.trace is not None, "collect follows submit, which needs a trace"
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
