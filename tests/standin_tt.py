"""STAND-INS for the Tenstorrent layer, for unit tests on a machine without a Tenstorrent chip.

Nothing here is ttnn or tt-metal. ``StandInTTNN`` has the names the tt backend calls on the ``ttnn`` module
and records every call; its "device" computes a trace's output from what is in the trace's input buffers at
execution time, so a test can tell which frame's embeddings and latents a picture came from.
``standin_sd14_modules`` plays tt-metal's SD 1.4 package (compile_trace_sd, UNet, VAE, PNDM scheduler).
``write_standin_checkout`` writes a fake tt-metal checkout tree (either package layout) for import-level tests.

What these stand-ins prove is the backend's own logic: the order buffers are filled and traces captured,
executed and released, and that devices are closed on every exit path. They prove nothing about ttnn.
"""

from __future__ import annotations

import itertools
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import torch


@dataclass(eq=False)
class StandInTensor:
    """A 'device' or host tensor of the stand-in: a name, the mesh it lives on, and its values."""

    name: str
    mesh: object = None
    values: torch.Tensor | None = None
    stub: "StandInTTNN" = None

    def cpu(self, blocking: bool = True) -> "StandInTensor":
        self.stub.log.append(("read", self.mesh.label, self.name))
        if self.stub.fail_on_read is not None:
            raise self.stub.fail_on_read
        return StandInTensor(f"{self.name}@host", None, None if self.values is None else self.values.clone(), self.stub)


@dataclass(eq=False)
class StandInMesh:
    label: str
    stub: "StandInTTNN"
    rows: int = 1
    cols: int = 1
    submeshes: list = field(default_factory=list)
    closed: bool = False

    def create_submeshes(self, shape) -> list["StandInMesh"]:
        assert (shape.rows, shape.cols) == (1, 1)
        self.submeshes = [StandInMesh(f"chip{i}", self.stub) for i in range(self.rows * self.cols)]
        self.stub.log.append(("create_submeshes", self.label, len(self.submeshes)))
        return self.submeshes

    def get_submeshes(self) -> list["StandInMesh"]:
        return self.submeshes


class StandInTTNN:
    """Plays the ``ttnn`` module for the tt backend; ``log`` lists (call, mesh, detail) tuples in order."""

    bfloat16 = "bfloat16"
    TILE_LAYOUT = "TILE"
    DRAM_MEMORY_CONFIG = "DRAM"
    FabricConfig = SimpleNamespace(DISABLED="DISABLED", FABRIC_1D="FABRIC_1D", FABRIC_1D_RING="FABRIC_1D_RING",
                                   FABRIC_2D="FABRIC_2D")

    def __init__(self, chips: int = 1, arch: str = "wormhole_b0", mesh_shape: tuple[int, int] | None = None,
                 open_error: Exception | None = None):
        self.chips = chips
        self.arch = arch
        self.mesh_shape = mesh_shape or (1, chips)
        self.open_error = open_error
        self.fail_on_execute: BaseException | None = None
        self.fail_on_read: BaseException | None = None
        self.log: list[tuple] = []
        self.live_traces: set[int] = set()
        self.released_traces: set[int] = set()
        self.capturing: dict[str, int] = {}
        self.trace_outputs: dict[int, tuple[StandInTensor, StandInTensor, StandInTensor]] = {}
        self._ids = itertools.count(1)
        self.model_preprocessing = SimpleNamespace(preprocess_model_parameters=self._preprocess)
        self._ttnn = SimpleNamespace(multi_device=SimpleNamespace(SystemMeshDescriptor=self._system_mesh))

    # --- the calls the backend makes -------------------------------------------------------------------------
    def get_num_devices(self) -> int:
        return self.chips

    def get_arch_name(self) -> str:
        return self.arch

    def _system_mesh(self):
        return SimpleNamespace(shape=lambda: self.mesh_shape)

    def MeshShape(self, rows, cols):  # noqa: N802 (ttnn's name)
        return SimpleNamespace(rows=rows, cols=cols)

    def Shape(self, dims):  # noqa: N802
        return tuple(dims)

    def set_fabric_config(self, config) -> None:
        self.log.append(("fabric", None, config))

    def open_mesh_device(self, **sizes) -> StandInMesh:
        self.log.append(("open_mesh", "mesh", sizes))
        if self.open_error is not None:
            raise self.open_error
        return StandInMesh("mesh", self, *self.mesh_shape)

    def close_mesh_device(self, mesh: StandInMesh) -> None:
        assert not mesh.closed, f"{mesh.label} closed twice"
        mesh.closed = True
        self.log.append(("close", mesh.label, None))

    def allocate_tensor_on_device(self, shape, dtype, layout, mesh, memory_config) -> StandInTensor:
        return StandInTensor(f"buffer{next(self._ids)}", mesh, torch.zeros(shape), self)

    def from_torch(self, values, dtype=None, layout=None, device=None) -> StandInTensor:
        return StandInTensor("host" if device is None else f"tensor{next(self._ids)}", device, values.clone(), self)

    def to_torch(self, tensor: StandInTensor) -> torch.Tensor:
        return tensor.values.clone()

    def copy_host_to_device_tensor(self, host: StandInTensor, device_tensor: StandInTensor, cq_id=0) -> None:
        device_tensor.values = host.values.clone()
        self.log.append(("copy", device_tensor.mesh.label, device_tensor.name, fingerprint(host.values)))

    def begin_trace_capture(self, mesh, cq_id=0) -> int:
        trace_id = next(self._ids)
        self.capturing[mesh.label] = trace_id
        self.log.append(("begin_capture", mesh.label, trace_id))
        return trace_id

    def end_trace_capture(self, mesh, trace_id, cq_id=0) -> None:
        assert self.capturing.pop(mesh.label) == trace_id
        self.live_traces.add(trace_id)
        self.log.append(("end_capture", mesh.label, trace_id))

    def execute_trace(self, mesh, trace_id, cq_id=0, blocking=True) -> None:
        assert trace_id not in self.released_traces, f"replayed released trace {trace_id}"
        assert trace_id in self.live_traces, f"executed unknown trace {trace_id}"
        self.log.append(("execute", mesh.label, trace_id, blocking))
        if self.fail_on_execute is not None:
            raise self.fail_on_execute
        embeddings, latents, output = self.trace_outputs[trace_id]
        output.values = standin_picture(embeddings.values, latents.values)

    def release_trace(self, mesh, trace_id) -> None:
        assert trace_id in self.live_traces and trace_id not in self.released_traces, f"released {trace_id} twice"
        self.live_traces.discard(trace_id)
        self.released_traces.add(trace_id)
        self.log.append(("release", mesh.label, trace_id))

    def synchronize_device(self, mesh) -> None:
        pass

    def deallocate(self, tensor) -> None:
        pass

    def _preprocess(self, initialize_model, custom_preprocessor, device):
        initialize_model()
        self.log.append(("preprocess", device.label, None))
        return SimpleNamespace()

    # --- helpers for tests ---------------------------------------------------------------------------------
    def calls(self, name: str) -> list[tuple]:
        return [entry for entry in self.log if entry[0] == name]

    @classmethod
    def ttnn_names(cls) -> list[str]:
        """The names this stand-in plays, i.e. what the backend may call on ttnn (checked against the real one)."""
        helpers = {"calls", "ttnn_names"}
        names = [name for name in vars(cls) if not name.startswith("_") and name not in helpers]
        return sorted(names + ["model_preprocessing.preprocess_model_parameters",
                               "_ttnn.multi_device.SystemMeshDescriptor", "MeshDevice.create_submeshes",
                               "MeshDevice.get_submeshes", "Tensor.cpu",
                               *(f"FabricConfig.{name}" for name in vars(cls.FabricConfig))])


def fingerprint(values: torch.Tensor) -> tuple:
    return tuple(values.shape), round(float(values.double().sum()), 4), round(float(values.double().abs().sum()), 4)


def standin_picture(embeddings: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
    """A [1, 3, 512, 512] "image" in [-1, 1] that depends on both inputs, so each frame's output is its own."""
    tile = torch.tanh(latents[0, :3].repeat_interleave(8, dim=1).repeat_interleave(8, dim=2))
    return (tile + torch.tanh(embeddings.mean()) * 0.1).clamp(-1, 1).unsqueeze(0)


def standin_sd14_modules(stub: StandInTTNN, package=None):
    """Plays tt-metal's SD 1.4 package: same names and call shapes as the real one, none of its work."""
    from ttlesson.tt_metal import SD14Modules

    class TtPNDMScheduler:
        def __init__(self, **kwargs):
            self.kwargs = kwargs
            self.init_noise_sigma = 1.0

        def set_timesteps(self, steps):
            self.timesteps = torch.arange(steps + 1, 0, -1) * 20  # PNDM makes one more step than asked

    def compile_trace_sd(mesh, model, config, vae, input_latents, time_embeddings, time_step, guidance, scheduler,
                         steps):
        stub.log.append(("compile", mesh.label, steps, guidance, len(time_embeddings)))
        embeddings = stub.allocate_tensor_on_device((2, 96, 32), None, None, mesh, None)
        trace_id = stub.begin_trace_capture(mesh)
        output = StandInTensor(f"output{trace_id}", mesh, torch.zeros(1, 3, 512, 512), stub)
        stub.trace_outputs[trace_id] = (embeddings, input_latents, output)
        stub.end_trace_capture(mesh, trace_id)
        return embeddings, output, trace_id

    return SD14Modules(
        package=package or SimpleNamespace(module="stand-in", layout="stand-in",
                                           checkout=SimpleNamespace(describe=lambda: "stand-in checkout")),
        compile_trace_sd=compile_trace_sd,
        UNet2DConditionModel=lambda mesh, parameters, batch, height, width: SimpleNamespace(mesh=mesh),
        Vae=lambda torch_vae, device: SimpleNamespace(device=device),
        TtPNDMScheduler=TtPNDMScheduler,
        custom_preprocessor=lambda model, name: {},
        utility_module="stand-in",
        l1_small_size=20928,
        trace_region_size=789835776,
    )


# --- stand-in tt-metal checkouts on disk --------------------------------------------------------------------

SD14_DIRS = {"current": "models/demos/vision/generative/stable_diffusion/wormhole",
             "older": "models/demos/wormhole/stable_diffusion"}
UTILITY_FILES = {"current": "models/common/utility_functions.py", "older": "models/utility_functions.py"}
SD35_FILES = {"current": "models/tt_dit/pipelines/stable_diffusion_35_large/pipeline_stable_diffusion_35_large.py",
              "older": "models/experimental/tt_dit/pipelines/stable_diffusion_35_large/"
                       "pipeline_stable_diffusion_35_large.py"}


def write_standin_checkout(root: Path, layout: str, *, with_trace: bool = True, sd35: bool = False,
                           broken_import: str | None = None) -> Path:
    """A fake tt-metal checkout with the SD 1.4 package files at ``layout``'s paths (module stubs only)."""
    package = SD14_DIRS[layout]
    utility = UTILITY_FILES[layout].removesuffix(".py").replace("/", ".")
    (root / "tt_metal").mkdir(parents=True, exist_ok=True)
    files = {
        UTILITY_FILES[layout]: "def is_wormhole_b0():\n    return True\n\ndef is_blackhole():\n    return False\n",
        f"{package}/sd_helper_funcs.py": (f"import {utility}\nLAYOUT = {layout!r}\n"
                                          + ("def compile_trace_sd(*args):\n    return args\n" if with_trace else "")),
        f"{package}/sd_pndm_scheduler.py": "class TtPNDMScheduler:\n    pass\n",
        f"{package}/custom_preprocessing.py": "def custom_preprocessor(model, name):\n    return {}\n",
        f"{package}/tt/ttnn_functional_unet_2d_condition_model_new_conv.py": "class UNet2DConditionModel:\n    pass\n",
        f"{package}/tt/vae/ttnn_vae.py": "class Vae:\n    pass\n",
        f"{package}/common.py": (
            f"from {utility} import is_blackhole\nSD_L1_SMALL_SIZE = 21760 if is_blackhole() else 20928\n"
            "SD_TRACE_REGION_SIZE = 920000000 if is_blackhole() else 789835776\n" if layout == "current"
            else "SD_L1_SMALL_SIZE = 20928\nSD_TRACE_REGION_SIZE = 814510080\n"),
    }
    if broken_import:
        files[f"{package}/sd_pndm_scheduler.py"] = f"import {broken_import}\n"
    if sd35:
        files[SD35_FILES[layout]] = textwrap.dedent(f"""\
            LAYOUT = {layout!r}
            class StableDiffusion3Pipeline:
                pass
            """)
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for folder in [root / "models", *(p for p in (root / "models").rglob("*") if p.is_dir())]:
        (folder / "__init__.py").touch()
    return root
