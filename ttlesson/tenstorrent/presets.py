"""What the tt backend opens on a Tenstorrent system, per model: decided from tt-metal's own presets and tests.

A *system* is what ttnn reports for the host: the architecture, the number of chips and the system mesh
shape (``SystemMeshDescriptor().shape()``: N150 1×1, N300 2×1, T3K 2×4, 6U Galaxy 8×4, P150 1×1, P300 2×1,
4×P150 2×2, 8×P150 2×4, Blackhole Galaxy 8×4). A *plan* is the mesh the backend opens, always with an explicit
``mesh_shape``, and everything else a model needs on it.

* SD 1.4 (tt-metal's traced demo) runs one pipeline per chip: the mesh opened is the system mesh, split into
  1×1 chips. Each chip's compute grid must be the one the demo is built for (8×8 on Wormhole, 11×10 on
  Blackhole); a Galaxy chip has more cores, which tt's own serving code narrows with
  ``TT_METAL_CORE_GRID_OVERRIDE_TODEPRECATE`` before ttnn starts (7,7 on a Wormhole Galaxy, 10,9 on a
  Blackhole Galaxy). The trace region is sized for the demo's 50-step loop, so more steps are refused.
* SD 3.5 Large (tt_dit) spreads one image over a mesh shape it has a parallel preset for; the table
  ``SD35_LAYOUTS`` says which shape to open on which system, with the fabric and sizes tt_dit's tests use.

Everything here is data and small pure functions, so ``ttlesson detect`` can say what would happen without
importing ttnn.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import env
from ..presenting import Presentable, lever
from .arch import Arch


@dataclass(frozen=True)
class TTSystem(Presentable):
    """A host's Tenstorrent chips as ttnn describes them (or as detection expects ttnn to)."""

    arch: Arch
    chips: int
    shape: tuple[int, int]  # ttnn's system mesh shape
    board: str = ""  # MESH_DEVICE name when known (N300, T3K, TG, P150x4…)

    @property
    def name(self) -> str:
        return SYSTEM_NAMES.get((self.arch, self.shape),
                                self.board or f"{self.chips}-chip {self.arch.metal_name} system")

    def __str__(self) -> str:
        return f"{self.name}: {self.chips} {self.arch.metal_name} chip{'s' if self.chips != 1 else ''}, " \
               f"system mesh {_shape_text(self.shape)}"


SYSTEM_NAMES = {
    (Arch.WORMHOLE, (1, 1)): "N150", (Arch.WORMHOLE, (2, 1)): "N300", (Arch.WORMHOLE, (2, 4)): "T3K",
    (Arch.WORMHOLE, (8, 4)): "Wormhole Galaxy",
    (Arch.BLACKHOLE, (1, 1)): "P150", (Arch.BLACKHOLE, (2, 1)): "P300",
    (Arch.BLACKHOLE, (2, 2)): "Blackhole QuietBox (4 chips)", (Arch.BLACKHOLE, (2, 4)): "Blackhole LoudBox (8×P150)",
    (Arch.BLACKHOLE, (8, 4)): "Blackhole Galaxy",
}

# The system mesh ttnn reports for each MESH_DEVICE name detection gives (checked with the real ttnn 0.81.1 wheel
# on mock clusters: tests/test_tt_topologies.py), for when ttnn itself is not asked.
SYSTEM_SHAPES = {
    "N150": (Arch.WORMHOLE, (1, 1)), "N300": (Arch.WORMHOLE, (2, 1)), "T3K": (Arch.WORMHOLE, (2, 4)),
    "TG": (Arch.WORMHOLE, (8, 4)),
    "P100": (Arch.BLACKHOLE, (1, 1)), "P150": (Arch.BLACKHOLE, (1, 1)), "P300": (Arch.BLACKHOLE, (2, 1)),
    "P150x4": (Arch.BLACKHOLE, (2, 2)), "P300x2": (Arch.BLACKHOLE, (2, 2)), "P150x8": (Arch.BLACKHOLE, (2, 4)),
    "BHGLX": (Arch.BLACKHOLE, (8, 4)),
}


# --- SD 1.4: one traced pipeline per chip -------------------------------------------------------------------

# The compute grid tt-metal's SD 1.4 demo runs on: an N150 chip's (8×8) and a P150 chip's (11×10).
SD14_GRID = {Arch.WORMHOLE: (8, 8), Arch.BLACKHOLE: (11, 10)}
# Systems whose chips have a larger grid, and the override tt's serving code sets for them (the last core's
# x,y): tt-inference-server tt-media-server/utils/runner_utils.py, _setup_grid_override.
GRID_OVERRIDES = {(Arch.WORMHOLE, (8, 4)): "7,7", (Arch.BLACKHOLE, (8, 4)): "10,9"}
# tt-metal sizes the SD 1.4 trace region for its demo's 50-step loop (common.py: SD_TRACE_REGION_SIZE).
SD14_MAX_STEPS = 50


@dataclass(frozen=True)
class SD14Plan:
    mesh_shape: tuple[int, int]  # opened explicitly, then split into 1×1 chips
    chips: int
    grid: tuple[int, int]  # each chip's compute grid, as the demo needs it
    grid_override: str | None  # TT_METAL_CORE_GRID_OVERRIDE_TODEPRECATE to set before ttnn starts


def plan_sd14(system: TTSystem) -> SD14Plan:
    return SD14Plan(system.shape, system.chips, SD14_GRID[system.arch], GRID_OVERRIDES.get((system.arch, system.shape)))


def grid_problem(arch: Arch, grid: tuple[int, int], chip: str) -> str | None:
    """One sentence when a chip's compute grid is not the one tt-metal's SD 1.4 is built for, else None."""
    wanted = SD14_GRID[arch]
    if tuple(grid) == wanted:
        return None
    override = env.text(env.GRID_OVERRIDE) or None
    if grid[0] >= wanted[0] and grid[1] >= wanted[1]:
        fix = (f"set {env.GRID_OVERRIDE}={wanted[0] - 1},{wanted[1] - 1} before starting Python "
               "(tt's own serving code does this on a Galaxy)")
        if override:
            fix = f"{env.GRID_OVERRIDE} is {override!r}; set it to {wanted[0] - 1},{wanted[1] - 1}"
    else:
        fix = ("this chip has fewer cores than the demo uses, so run on another board or use "
               f"{lever('backend', 'torch')}")
    return (f"Chip {chip} has a {grid[0]}×{grid[1]} compute grid but tt-metal's SD 1.4 is built for "
            f"{wanted[0]}×{wanted[1]} on {arch.metal_name}; {fix}.")


def steps_problem(steps: int) -> str | None:
    if steps <= SD14_MAX_STEPS:
        return None
    return (f"Steps {steps} do not fit tt-metal's SD 1.4 trace, whose region is sized for its {SD14_MAX_STEPS}-step "
            f"loop; give {lever('steps', SD14_MAX_STEPS)} or fewer (or {lever('backend', 'torch')} for more).")


# --- SD 3.5 Large: one image over a whole mesh (tt_dit) -----------------------------------------------------

@dataclass(frozen=True)
class SD35Layout:
    mesh_shape: tuple[int, int]  # the shape tt_dit's preset is keyed by, opened explicitly
    fabric: str  # ttnn.FabricConfig member
    l1_small_size: int
    trace_region_size: int
    why: str  # the tt-metal file this follows


SD35_TEST = "models/tt_dit/tests/models/sd35/test_pipeline_sd35.py"
SD35_PIPELINE = "models/tt_dit/pipelines/stable_diffusion_35_large/pipeline_stable_diffusion_35_large.py"
SD35_LAYOUTS: dict[tuple[Arch, tuple[int, int]], SD35Layout] = {
    (Arch.WORMHOLE, (2, 4)): SD35Layout((2, 4), "FABRIC_2D", 32768, 50_000_000,
                                        f"tt_dit's 2×4 preset, as {SD35_TEST} runs it on a T3K"),
    (Arch.WORMHOLE, (8, 4)): SD35Layout((4, 8), "FABRIC_2D", 32768, 50_000_000,
                                        f"tt_dit's 4×8 preset: {SD35_TEST} opens a Galaxy as MeshShape(4, 8)"),
    (Arch.BLACKHOLE, (2, 2)): SD35Layout((1, 4), "FABRIC_1D_RING", 65536, 50_000_000,
                                         f"tt_dit's 1×4 ring preset for 4-chip Blackhole boxes ({SD35_PIPELINE})"),
}
SD35_SYSTEMS = ("a T3K (2×4), a Wormhole Galaxy (opened 4×8) or a 4-chip Blackhole QuietBox (opened as a "
                 "1×4 ring)")


def sd35_layout(system: TTSystem) -> SD35Layout | None:
    return SD35_LAYOUTS.get((system.arch, system.shape))


def sd35_refusal(system: TTSystem) -> str:
    """Why SD 3.5 Large does not run on ``system``, in one sentence with what to do instead."""
    if (system.arch, system.shape) == (Arch.BLACKHOLE, (2, 4)):
        fix = ("make four chips that are linked in a ring the only visible ones (TT_VISIBLE_DEVICES=a,b,c,d, which "
               f"ttnn then sees as a 4-chip QuietBox), or use {lever('model', 'sd14')}")
    else:
        fix = f"use {lever('model', 'sd14')}, which runs on every Tenstorrent chip"
    return f"SD 3.5 Large runs on {SD35_SYSTEMS}, not on this {system}; {fix}."


# --- the verdicts detect shows ----------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelVerdict(Presentable):
    model: str
    supported: bool
    mesh_shape: tuple[int, int] | None  # what the backend would open
    why: str  # one sentence

    def __str__(self) -> str:
        where = f", opens mesh {_shape_text(self.mesh_shape)}" if self.mesh_shape else ""
        return f"{'yes' if self.supported else 'no'}{where}: {self.why}"


def verdicts(system: TTSystem | None) -> list[ModelVerdict]:
    """For each model the tt backend knows, whether it runs on ``system`` and on which mesh."""
    if system is None:
        none = "no Tenstorrent system was found"
        return [ModelVerdict("sd14", False, None, f"{none}."), ModelVerdict("sd35-large", False, None, f"{none}.")]
    return [sd14_verdict(system), sd35_verdict(system)]


def sd14_verdict(system: TTSystem) -> ModelVerdict:
    plan = plan_sd14(system)
    chips = f"{plan.chips} chip{'s' if plan.chips != 1 else ''}"
    grid = (f"; each chip narrowed to the demo's {plan.grid[0]}×{plan.grid[1]} grid with "
            f"{env.GRID_OVERRIDE}={plan.grid_override}" if plan.grid_override else "")
    return ModelVerdict("sd14", True, plan.mesh_shape,
                        f"tt-metal's traced SD 1.4 demo, one pipeline per chip on {chips} (--devices all){grid}.")


def sd35_verdict(system: TTSystem) -> ModelVerdict:
    layout = sd35_layout(system)
    if layout is None:
        return ModelVerdict("sd35-large", False, None, sd35_refusal(system))
    return ModelVerdict("sd35-large", True, layout.mesh_shape, f"{layout.why}, with {layout.fabric}.")


def _shape_text(shape) -> str:
    return "×".join(str(part) for part in shape)
