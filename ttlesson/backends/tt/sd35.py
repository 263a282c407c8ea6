"""SD 3.5 Large on a Tenstorrent mesh through tt-metal's tt_dit pipeline (``StableDiffusion3Pipeline``).

One image uses the whole mesh (classifier-free-guidance halves, sequence and tensor parallel across chips), so
this runs only on the systems ``plan.SD35_LAYOUTS`` names, opened in the shape tt_dit's preset is keyed by
(a Galaxy, 8×4 to ttnn, is opened as 4×8; a 4-chip Blackhole box, 2×2 to ttnn, as a 1×4 ring). Other systems are
refused before anything loads, with the systems that work and ``--model sd14`` as the alternative. The checkpoint is
gated on the Hugging Face Hub: that is said before loading, and a missing login stops the run there.

Two pipeline generations exist: newer ``__call__(prompts=…, negative_prompts=…, guidance_scale=…)``, older
``__call__(prompt_1=…, prompt_2=…, prompt_3=…, negative_prompt_1=…, …)`` with guidance fixed when built.
"""

from __future__ import annotations

import inspect
import time
import warnings
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from ...errors import BackendUnavailableError, GatedCheckpointWarning, ModelNotAvailableError
from ...models import ModelSpec
from ...presenting import lever
from ...tenstorrent.presets import SD35Layout, TTSystem, sd35_layout, sd35_refusal
from ..base import Backend, FrameRequest, StepCallback
from .device import (
    claim_cards,
    describe_system,
    open_mesh,
    prepare_environment,
    refuse_unrunnable,
    require_chips,
)
from .runtime import LOG_NAME, Runtime, default_log_file
from .session import DeviceSession

SIZE = 1024


def check_system(system: TTSystem) -> SD35Layout:
    """The layout SD 3.5 Large uses on ``system``, or one sentence saying why it does not run there."""
    layout = sd35_layout(system)
    if layout is None:
        raise BackendUnavailableError(sd35_refusal(system))
    return layout


def gated_checkpoint_notice(spec: ModelSpec) -> None:
    """Say the checkpoint is gated; stop when there is neither a cached copy nor a Hugging Face login."""
    import huggingface_hub

    cached = huggingface_hub.try_to_load_from_cache(spec.source, "model_index.json")
    if isinstance(cached, str):
        return
    if not huggingface_hub.get_token():
        raise ModelNotAvailableError(f"{spec.source} is gated on the Hugging Face Hub and not downloaded yet: accept "
                                     f"its licence at {spec.hub_url} and log in (ttlesson auth login), or use "
                                     f"{lever('model', 'sd14')}, which needs no login.")
    warnings.warn(GatedCheckpointWarning(
        f"{spec.source} is gated: tt-metal's pipeline now downloads it ({spec.download_size}) with your Hugging Face "
        f"login, which works only if you accepted its licence at {spec.hub_url}."), stacklevel=3)


class TTSD35Backend(Backend):
    name = "tt"
    schedulers = ("flow-match-euler",)  # tt-metal's own flow-matching Euler loop
    precision = "tt-metal"
    reports_steps = False
    progress_note = "progress is per frame: tt_dit's pipeline runs the denoising steps over the whole mesh"

    def __init__(self, spec: ModelSpec, devices: int | str = "all", runtime: Runtime | None = None):
        super().__init__(spec)
        if devices not in (1, "all"):
            raise BackendUnavailableError(f"--devices {devices} does not apply to SD 3.5 Large: tt_dit spreads each "
                                          "image over the whole mesh, so leave --devices out.")
        self.runtime = runtime or Runtime()
        self.shape: tuple[int, int] = (0, 0)  # the mesh opened
        self.arch = ""
        self.system: TTSystem | None = None
        self.load_seconds = 0.0
        self.log_folder = None  # set by render: tt-metal's log goes to log_folder/tt-metal.log
        self.log_file: Path | None = None
        self._pipeline: Any = None  # tt_dit's StableDiffusion3Pipeline, once open
        self._built_guidance: float | None = None
        self._session = DeviceSession()

    @property
    def device(self) -> str:
        return f"Tenstorrent {self.arch} mesh {self.shape[0]}×{self.shape[1]}" if self.arch else "Tenstorrent"

    def check_request(self, request: FrameRequest) -> None:
        problems = []
        if (request.width, request.height) != (SIZE, SIZE):
            problems.append((f"Size {request.width}x{request.height} does not run on the tt backend's SD 3.5 Large, "
                             f"which makes {SIZE}x{SIZE} frames (give {lever('size', SIZE)}).", lever("size", SIZE)))
        refuse_unrunnable(problems, self.runtime.driver_check)

    def load(self) -> None:
        if self._session.is_open:
            return
        if self.spec.name != "sd35-large":
            raise BackendUnavailableError(f"TTSD35Backend runs sd35-large, not {self.spec.name}.")
        started = time.perf_counter()
        self.log_file = prepare_environment(
            log_file=(self.log_folder / LOG_NAME) if self.log_folder else default_log_file())
        claim_cards("all")  # SD 3.5 needs the whole mesh: a card another process holds is refused by name
        ttnn, chips = require_chips(self.runtime.ttnn_loader, self.runtime.driver_check)
        system = describe_system(ttnn, chips)
        layout = check_system(system)
        pipeline_class = self.runtime.sd35_loader()
        gated_checkpoint_notice(self.spec)
        self._session = DeviceSession()
        self._session.open(lambda stack: self._open(stack, ttnn, layout, pipeline_class))
        self.shape, self.arch, self.system = layout.mesh_shape, system.arch.metal_name, system
        self.load_seconds = time.perf_counter() - started

    def _open(self, stack: ExitStack, ttnn, layout: SD35Layout, pipeline_class: type) -> None:
        mesh = stack.enter_context(open_mesh(ttnn, mesh_shape=layout.mesh_shape, l1_small_size=layout.l1_small_size,
                                             trace_region_size=layout.trace_region_size, fabric=layout.fabric,
                                             log_file=self.log_file))
        stack.callback(self._drop_pipeline)  # tt_dit's tracers hold device buffers: dropped before the mesh closes
        self._pipeline = self._build(pipeline_class, mesh)

    def _drop_pipeline(self) -> None:
        self._pipeline = None

    def generate(self, request: FrameRequest, on_step: StepCallback | None = None):
        self.check_request(request)
        self.load()
        with self._session.working():
            return self._generate(request)

    def _generate(self, request: FrameRequest):
        negative = request.negative_prompt or ""
        if _is_older_api(self._pipeline):
            if request.guidance != self._built_guidance:
                raise BackendUnavailableError(f"This tt-metal release's SD 3.5 pipeline fixes guidance when it is "
                                              f"built ({self._built_guidance}); leave --guidance out, or update "
                                              "tt-metal.")
            images = self._pipeline(prompt_1=[request.prompt], prompt_2=[request.prompt], prompt_3=[request.prompt],
                                    negative_prompt_1=[negative], negative_prompt_2=[negative],
                                    negative_prompt_3=[negative], num_inference_steps=request.steps,
                                    seed=request.seed, traced=True)
        else:
            images = self._pipeline(prompts=[request.prompt], negative_prompts=[negative],
                                    num_inference_steps=request.steps, guidance_scale=request.guidance,
                                    seed=request.seed, traced=True)
        return images[0]

    def close(self) -> None:
        self._session.close()

    def _build(self, pipeline_class: type[Any], mesh):
        create = pipeline_class.create_pipeline
        if "guidance_scale" in inspect.signature(create).parameters:  # older: guidance fixed at build time
            self._built_guidance = self.spec.guidance
            return create(mesh_device=mesh, image_w=SIZE, image_h=SIZE, guidance_scale=self.spec.guidance,
                          checkpoint_name=self.spec.source)
        return create(mesh_device=mesh, width=SIZE, height=SIZE, checkpoint_name=self.spec.source)


def _is_older_api(pipeline) -> bool:
    return "prompt_1" in inspect.signature(pipeline.__call__).parameters
