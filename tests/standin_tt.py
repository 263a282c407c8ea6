"""STAND-INS for the Tenstorrent layer, for unit tests on a machine without a Tenstorrent chip.

Nothing here is ttnn or tt-metal. ``StandInTTNN`` has the names the tt backend calls on the ``ttnn`` module
and records every call; its "device" computes a trace's output from what is in the trace's input buffers when
the trace runs, so a test can tell which frame's embeddings and latents a picture came from.
``standin_sd14_modules`` plays tt-metal's SD 1.4 package (compile_trace_sd, UNet, VAE, PNDM scheduler),
``StandInTTDiTPipeline`` tt_dit's SD 3.5 pipeline; ``standin_n300_cards_runtime`` plays the cards Ray gave a
render service actor as N300s (four: a T3K).
``write_standin_checkout`` writes a fake tt-metal checkout tree (either package layout) for import-level tests.

The stand-in refuses what the real ttnn 0.81.1 refuses on the paths the backend takes (checked against the
installed wheel by ``tests/test_tt_ttnn.py``): the same signatures and keyword-only arguments,
``copy_host_to_device_tensor`` of another shape, dtype or layout (a TT_FATAL, as a RuntimeError), ``MeshShape``
without ``.rows``/``.cols``; and it behaves like it where results depend on it: ``to_torch`` gives bfloat16,
``execute_trace`` returns before the trace has run (the output is there once it is read with ``cpu(blocking=
True)`` or the device is synchronized), ``compile_trace_sd``'s embeddings buffer is ``[2, 96, 768]``.

What these stand-ins prove is the backend's own logic: the order buffers are filled and traces captured,
executed and released, and that devices are closed on every exit path. They prove nothing about silicon.
"""

from __future__ import annotations

import itertools
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import torch

GRIDS = {"wormhole_b0": (8, 8), "blackhole": (11, 10)}
EMBEDDINGS_SHAPE = (2, 96, 768)  # what tt-metal's compile_trace_sd allocates for SD 1.4's CLIP


def tt_fatal(where: str, info: str) -> RuntimeError:
    return RuntimeError(f"TT_FATAL @ {where}\ninfo:\n{info}\nbacktrace:\n --- stand-in")


class StandInMeshShape:
    """Like ttnn.MeshShape: iterable, ``dims()`` and ``mesh_size()``, and no ``rows``/``cols``."""

    def __init__(self, *dims: int):
        self._dims = tuple(int(d) for d in dims)

    def __iter__(self):
        return iter(self._dims)

    def __eq__(self, other) -> bool:
        return tuple(self) == tuple(other)

    def dims(self) -> int:
        return len(self._dims)

    def mesh_size(self) -> int:
        size = 1
        for dim in self._dims:
            size *= dim
        return size

    def __repr__(self) -> str:
        return f"MeshShape({list(self._dims)})"


@dataclass(eq=False)
class StandInTensor:
    """A 'device' or host tensor of the stand-in: its name, mesh, spec (shape, dtype, layout) and values."""

    name: str
    mesh: object = None
    values: torch.Tensor | None = None
    stub: StandInTTNN = None
    dtype: str = "bfloat16"
    layout: str = "TILE"

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.values.shape)

    def cpu(self, blocking: bool = True, cq_id=None) -> StandInTensor:
        self.stub.log.append(("read", self.mesh.label, self.name))
        if self.stub.fail_on_read is not None:
            raise self.stub.fail_on_read
        if blocking:
            self.stub._run_pending(self.mesh)
        return StandInTensor(f"{self.name}@host", None, self.values.clone(), self.stub, self.dtype, self.layout)


@dataclass(eq=False)
class StandInMesh:
    label: str
    stub: StandInTTNN
    shape: StandInMeshShape = field(default_factory=lambda: StandInMeshShape(1, 1))
    submeshes: list = field(default_factory=list)
    closed: bool = False

    def create_submeshes(self, submesh_shape) -> list[StandInMesh]:
        assert tuple(submesh_shape) == (1, 1)
        self.submeshes = [StandInMesh(f"chip{i}", self.stub) for i in range(self.shape.mesh_size())]
        self.stub.log.append(("create_submeshes", self.label, len(self.submeshes)))
        return self.submeshes

    def get_submeshes(self) -> list[StandInMesh]:
        return self.submeshes

    def compute_with_storage_grid_size(self):
        x, y = self.stub.grid
        return SimpleNamespace(x=x, y=y)


class StandInTTNN:
    """Plays the ``ttnn`` module for the tt backend; ``log`` lists (call, mesh, detail) tuples in order."""

    bfloat16 = "bfloat16"
    float32 = "float32"
    TILE_LAYOUT = "TILE"
    ROW_MAJOR_LAYOUT = "ROW_MAJOR"
    DRAM_MEMORY_CONFIG = "DRAM"
    FabricConfig = SimpleNamespace(DISABLED="DISABLED", FABRIC_1D="FABRIC_1D", FABRIC_1D_RING="FABRIC_1D_RING",
                                   FABRIC_2D="FABRIC_2D")
    MeshShape = StandInMeshShape

    def __init__(self, chips: int = 1, arch: str = "wormhole_b0", mesh_shape: tuple[int, int] | None = None,
                 open_error: Exception | None = None, grid: tuple[int, int] | None = None,
                 execute_seconds: float = 0.0):
        self.chips = chips
        self.arch = arch
        self.mesh_shape = mesh_shape or (chips, 1)
        self.grid = grid or GRIDS[arch]
        self.open_error = open_error
        self.execute_seconds = execute_seconds  # how long a traced frame "runs" before its output can be read
        self.fail_on_execute: BaseException | None = None
        self.fail_on_read: BaseException | None = None
        self.fail_on_close: dict[str, BaseException] = {}  # mesh label → what closing it raises
        self.log: list[tuple] = []
        self.live_traces: set[int] = set()
        self.released_traces: set[int] = set()
        self.capturing: dict[str, int] = {}
        self.pending: list[tuple[StandInMesh, int, torch.Tensor, torch.Tensor, StandInTensor]] = []
        self.trace_inputs: dict[int, tuple[StandInTensor, StandInTensor, StandInTensor]] = {}
        self._ids = itertools.count(1)
        self.model_preprocessing = SimpleNamespace(preprocess_model_parameters=self._preprocess)
        self._ttnn = SimpleNamespace(multi_device=SimpleNamespace(SystemMeshDescriptor=self._system_mesh))

    # --- the calls the backend makes -------------------------------------------------------------------------
    def get_num_devices(self) -> int:
        return self.chips

    def get_arch_name(self) -> str:
        return self.arch

    def _system_mesh(self):
        return SimpleNamespace(shape=lambda: StandInMeshShape(*self.mesh_shape))

    def Shape(self, dims):  # noqa: N802 (ttnn's name)
        return tuple(dims)

    def set_fabric_config(self, config, reliability_mode=None, num_planes=None, fabric_tensix_config=None,
                          fabric_udm_mode=None, fabric_manager_mode=None, router_config=None) -> None:
        self.log.append(("fabric", None, config))

    def open_mesh_device(self, mesh_shape=None, l1_small_size=0, trace_region_size=0, num_command_queues=1,
                         dispatch_core_config=None, offset=None, physical_device_ids=(),
                         worker_l1_size=0) -> StandInMesh:
        assert isinstance(mesh_shape, StandInMeshShape), "open the mesh with an explicit ttnn.MeshShape"
        self.log.append(("open_mesh", "mesh", {"mesh_shape": tuple(mesh_shape), "l1_small_size": l1_small_size,
                                               "trace_region_size": trace_region_size}))
        if self.open_error is not None:
            raise self.open_error
        if mesh_shape.mesh_size() > self.chips:
            raise tt_fatal("mesh_device.cpp:1", f"Requested {mesh_shape} but the system has {self.chips} devices")
        return StandInMesh("mesh", self, mesh_shape)

    def close_mesh_device(self, mesh_device: StandInMesh) -> None:
        assert not mesh_device.closed, f"{mesh_device.label} closed twice"
        mesh_device.closed = True
        self.log.append(("close", mesh_device.label, None))
        if mesh_device.label in self.fail_on_close:
            raise self.fail_on_close[mesh_device.label]

    def allocate_tensor_on_device(self, shape, dtype, layout, mesh_device, memory_config=None) -> StandInTensor:
        return StandInTensor(f"buffer{next(self._ids)}", mesh_device, torch.zeros(shape), self, dtype, layout)

    def from_torch(self, tensor, dtype=None, *, spec=None, tile=None, pad_value=None, layout=None, device=None,
                   memory_config=None, mesh_mapper=None, cq_id=None, preserve_nan_values=False, col_tilize=False,
                   enable_bfloat_opt=False) -> StandInTensor:
        values = tensor.to(torch.bfloat16) if dtype == self.bfloat16 else tensor.clone()
        return StandInTensor("host" if device is None else f"tensor{next(self._ids)}", device, values, self,
                             dtype or "float32", layout or "ROW_MAJOR")

    def to_torch(self, tensor: StandInTensor, dtype=None, *, torch_rank=None, mesh_composer=None, device=None,
                 cq_id=None) -> torch.Tensor:
        return tensor.values.to(torch.bfloat16) if tensor.dtype == self.bfloat16 else tensor.values.clone()

    def copy_host_to_device_tensor(self, host_tensor: StandInTensor, device_tensor: StandInTensor,
                                   cq_id=None) -> None:
        where = "tensor_apis.cpp"
        if host_tensor.shape != device_tensor.shape:
            raise tt_fatal(where, "Host tensor has different shape")
        if host_tensor.dtype != device_tensor.dtype:
            raise tt_fatal(where, "Host tensor has different dtype")
        if host_tensor.layout != device_tensor.layout:
            raise tt_fatal(where, "Host tensor has different page config")
        device_tensor.values = host_tensor.values.clone()
        self.log.append(("copy", device_tensor.mesh.label, device_tensor.name, fingerprint(host_tensor.values)))

    def begin_trace_capture(self, mesh_device, *, cq_id=None) -> int:
        trace_id = next(self._ids)
        self.capturing[mesh_device.label] = trace_id
        self.log.append(("begin_capture", mesh_device.label, trace_id))
        return trace_id

    def end_trace_capture(self, mesh_device, trace_id, *, cq_id=None) -> None:
        assert self.capturing.pop(mesh_device.label) == trace_id
        self.live_traces.add(trace_id)
        self.log.append(("end_capture", mesh_device.label, trace_id))

    def execute_trace(self, mesh_device, trace_id, *, cq_id=None, blocking=True) -> None:
        assert trace_id not in self.released_traces, f"replayed released trace {trace_id}"
        assert trace_id in self.live_traces, f"executed unknown trace {trace_id}"
        self.log.append(("execute", mesh_device.label, trace_id, blocking))
        if self.fail_on_execute is not None:
            raise self.fail_on_execute
        embeddings, latents, output = self.trace_inputs[trace_id]
        # The trace reads its inputs in queue order, i.e. as they are now; its output appears when it has run.
        self.pending.append((mesh_device, trace_id, embeddings.values.clone(), latents.values.clone(), output))
        if blocking:
            self._run_pending(mesh_device)

    def release_trace(self, mesh_device, trace_id) -> None:
        assert trace_id in self.live_traces and trace_id not in self.released_traces, f"released {trace_id} twice"
        assert not any(entry[1] == trace_id for entry in self.pending), f"released {trace_id} while it still ran"
        self.live_traces.discard(trace_id)
        self.released_traces.add(trace_id)
        self.log.append(("release", mesh_device.label, trace_id))

    def synchronize_device(self, device, cq_id=None, sub_device_ids=()) -> None:
        self._run_pending(device)

    def deallocate(self, tensor, force=True) -> None:
        pass

    def _preprocess(self, *, model_name=None, version=None, initialize_model=None, convert_to_ttnn=None,
                    custom_preprocessor=None, device=None, prefix=""):
        initialize_model()
        self.log.append(("preprocess", device.label, None))
        return SimpleNamespace()

    def _run_pending(self, mesh) -> None:
        for entry in [entry for entry in self.pending if entry[0] is mesh]:
            _, _, embeddings, latents, output = entry
            if self.execute_seconds:
                time.sleep(self.execute_seconds)
            output.values = standin_picture(embeddings, latents).to(torch.bfloat16)
            self.pending.remove(entry)

    # --- helpers for tests ---------------------------------------------------------------------------------
    def calls(self, name: str) -> list[tuple]:
        return [entry for entry in self.log if entry[0] == name]

    # The names the backend may call on ttnn, checked against the real wheel: module functions, then members.
    FUNCTIONS = ("get_num_devices", "get_arch_name", "set_fabric_config", "open_mesh_device", "close_mesh_device",
                 "allocate_tensor_on_device", "from_torch", "to_torch", "copy_host_to_device_tensor",
                 "begin_trace_capture", "end_trace_capture", "execute_trace", "release_trace",
                 "synchronize_device", "deallocate")
    MEMBERS = ("MeshShape", "Shape", "bfloat16", "float32", "TILE_LAYOUT", "ROW_MAJOR_LAYOUT", "DRAM_MEMORY_CONFIG",
               "model_preprocessing.preprocess_model_parameters", "_ttnn.multi_device.SystemMeshDescriptor",
               "MeshDevice.create_submeshes", "MeshDevice.get_submeshes",
               "MeshDevice.compute_with_storage_grid_size", "Tensor.cpu", "FabricConfig.DISABLED",
               "FabricConfig.FABRIC_1D", "FabricConfig.FABRIC_1D_RING", "FabricConfig.FABRIC_2D")

    @classmethod
    def ttnn_names(cls) -> list[str]:
        return sorted(cls.FUNCTIONS + cls.MEMBERS)

    def signature_of(self, name: str):
        """The stand-in's callable for a name in FUNCTIONS or a method name ("MeshDevice.create_submeshes")."""
        owners = {"MeshDevice": StandInMesh, "Tensor": StandInTensor}
        if "." in name:
            owner, member = name.split(".", 1)
            if owner == "model_preprocessing":
                return self._preprocess
            return getattr(owners[owner], member)
        return getattr(self, name)


def fingerprint(values: torch.Tensor) -> tuple:
    return tuple(values.shape), round(float(values.double().sum()), 4), round(float(values.double().abs().sum()), 4)


def standin_picture(embeddings: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
    """A [1, 3, 512, 512] "image" in [-1, 1] that depends on both inputs, so each frame's output is its own."""
    tile = torch.tanh(latents.float()[0, :3].repeat_interleave(8, dim=1).repeat_interleave(8, dim=2))
    return (tile + torch.tanh(embeddings.float().mean()) * 0.1).clamp(-1, 1).unsqueeze(0)


def standin_sd14_modules(stub: StandInTTNN, package=None, fail_during_capture: BaseException | None = None):
    """Plays tt-metal's SD 1.4 package: same names and call shapes as the real one, none of its work."""
    from ttlesson.backends.tt.runtime import SD14Modules

    class TtPNDMScheduler:
        def __init__(self, **kwargs):
            self.kwargs = kwargs
            self.init_noise_sigma = 1.0

        def set_timesteps(self, steps):
            self.timesteps = torch.arange(steps + 1, 0, -1) * 20  # PNDM makes one more step than asked

    def compile_trace_sd(mesh, model, config, vae, input_latents, time_embeddings, time_step, guidance, scheduler,
                         steps):
        stub.log.append(("compile", mesh.label, steps, guidance, len(time_embeddings)))
        embeddings = stub.allocate_tensor_on_device(EMBEDDINGS_SHAPE, stub.bfloat16, stub.TILE_LAYOUT, mesh,
                                                    stub.DRAM_MEMORY_CONFIG)
        trace_id = stub.begin_trace_capture(mesh, cq_id=0)
        if fail_during_capture is not None:
            raise fail_during_capture
        output = StandInTensor(f"output{trace_id}", mesh, torch.zeros(1, 3, 512, 512), stub)
        stub.trace_inputs[trace_id] = (embeddings, input_latents, output)
        stub.end_trace_capture(mesh, trace_id, cq_id=0)
        return embeddings, output, trace_id

    return SD14Modules(
        package=package or SimpleNamespace(module="stand-in", layout="stand-in",
                                           checkout="stand-in checkout"),
        compile_trace_sd=compile_trace_sd,
        UNet2DConditionModel=lambda mesh, parameters, batch, height, width: SimpleNamespace(mesh=mesh),
        Vae=lambda torch_vae, device: SimpleNamespace(device=device),
        TtPNDMScheduler=TtPNDMScheduler,
        custom_preprocessor=lambda model, name: {},
        utility_module="stand-in",
        l1_small_size=20928,
        trace_region_size=789835776,
    )


def sd14_shaped_host(tiny_host):
    """The tiny model's host side with a text encoder as wide as SD 1.4's (768), so its embeddings fit the trace's
    [2, 96, 768] buffer; the tokenizer, UNet (for its time projection) and VAE stay the tiny model's."""
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    tokenizer = tiny_host.tokenizer
    encoder = CLIPTextModel(CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=768, intermediate_size=64,
                                           num_hidden_layers=1, num_attention_heads=12, max_position_embeddings=77,
                                           bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                           pad_token_id=tokenizer.pad_token_id)).eval()
    return type(tiny_host)(tokenizer, encoder, tiny_host.unet, tiny_host.vae)


def standin_runtime(**stub_options):
    """A Runtime whose ttnn and tt-metal package are stand-ins and whose host is the SD-1.4-shaped tiny model;
    importable by name, so worker processes (``--tt-parallel processes``) can build it too."""
    from ttlesson import models
    from ttlesson.backends.tt.chip import load_host_models
    from ttlesson.backends.tt.runtime import Runtime

    stub = StandInTTNN(**stub_options)
    host = sd14_shaped_host(load_host_models(models.resolve("tiny")))
    return Runtime(ttnn_loader=lambda: stub, driver_check=lambda: True,
                   sd14_loader=lambda arch: standin_sd14_modules(stub), host_loader=lambda spec: host)


def slow_standin_runtime():
    """``standin_runtime`` whose frames take half a second each, so a test can signal a process mid-render."""
    return standin_runtime(execute_seconds=0.5)


class StandInTTDiTPipeline:
    """Plays tt_dit's ``StableDiffusion3Pipeline`` (the newer API): ``create_pipeline`` on a mesh, then one
    1024×1024 image per call whose red channel is the seed, so a test can tell which request made it."""

    def __init__(self, mesh):
        self.mesh = mesh

    @classmethod
    def create_pipeline(cls, *, mesh_device, width=1024, height=1024, cfg_enabled=True, max_t5_sequence_length=256,
                        checkpoint_name="stabilityai/stable-diffusion-3.5-large"):
        return cls(mesh_device)

    def __call__(self, *, prompts, negative_prompts=None, num_inference_steps, seed=0, guidance_scale=3.5,
                 traced=False):
        from PIL import Image

        return [Image.new("RGB", (1024, 1024), (seed % 256, 0, 0))]


def standin_n300_cards_runtime():
    """A Runtime for the cards Ray made visible to this process (``TT_VISIBLE_DEVICES``), each played as an N300
    (two Wormhole chips): one card is an N300's 2×1 system mesh, four a T3K's 2×4. tt-metal's SD 1.4 package and
    tt_dit's SD 3.5 pipeline are the stand-ins; the host is the SD-1.4-shaped tiny model, loaded only when SD 1.4
    asks for it."""
    import os

    from ttlesson import models
    from ttlesson.backends.tt.chip import load_host_models
    from ttlesson.backends.tt.runtime import Runtime

    cards = len(os.environ.get("TT_VISIBLE_DEVICES", "0").split(","))
    stub = StandInTTNN(chips=2 * cards, mesh_shape=(2, cards))
    return Runtime(ttnn_loader=lambda: stub, driver_check=lambda: True,
                   sd14_loader=lambda arch: standin_sd14_modules(stub), sd35_loader=lambda: StandInTTDiTPipeline,
                   host_loader=lambda spec: sd14_shaped_host(load_host_models(models.resolve("tiny"))))


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
        f"{package}/demo/input_data.json": '[{"prompt": "a stand-in checkout\'s first demo prompt"}]\n',
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
