"""The samplers a frame can be denoised with: the model's own, or DPM-Solver++ in fewer steps.

* ``pndm``: SD 1.x's own (and tt-metal's), at 50 steps in the lesson.
* ``dpm-solver++``: second-order multistep DPM-Solver++ (Lu et al., 2022) through diffusers'
  ``DPMSolverMultistepScheduler``, at ``DPM_SOLVER_STEPS`` unless ``--steps`` says otherwise. Its authors and
  diffusers' documentation report high-quality samples in about 20 steps where PNDM needs 50; 25 leaves a
  margin (sources in docs/performance.md). Random weights cannot measure image quality, so this is taken
  from those published comparisons, not measured here.
* ``flow-match-euler``: SD 3.5's own.

The scheduler changes the pixels, so it is part of a frame's identity in the manifest.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import TTLessonError
from . import REGISTRY, ModelSpec

SCHEDULER_CHOICES = ("default", "pndm", "dpm-solver++", "flow-match-euler")
DPM_SOLVER_STEPS = 25
_CLASS_NAMES = {"PNDMScheduler": "pndm", "DPMSolverMultistepScheduler": "dpm-solver++",
                "FlowMatchEulerDiscreteScheduler": "flow-match-euler"}
_FAMILY = {"pndm": "sd1", "dpm-solver++": "sd1", "flow-match-euler": "sd3"}


def native(spec: ModelSpec) -> str:
    """The scheduler the model ships with, by ttlesson's name (a folder's other schedulers by class name)."""
    if spec.family == "sd3":
        return "flow-match-euler"
    if spec.name in REGISTRY:
        return "pndm"
    path = Path(spec.source) / "scheduler" / "scheduler_config.json"
    try:
        name = json.loads(path.read_text(encoding="utf-8")).get("_class_name", "")
    except (OSError, ValueError):
        return "pndm"
    return _CLASS_NAMES.get(name, name or "pndm")


def resolve(requested: str | None, spec: ModelSpec) -> str:
    """The scheduler ``requested`` (None or ``default``: the model's own) names for ``spec``, checked to fit it."""
    if requested in (None, "", "default"):
        return native(spec)
    if requested not in SCHEDULER_CHOICES:
        raise TTLessonError(f"Scheduler {requested!r} is not one ttlesson knows; use one of "
                            f"{', '.join(SCHEDULER_CHOICES)}.")
    if requested != native(spec) and _FAMILY[requested] != spec.family:
        fitting = sorted(name for name, family in _FAMILY.items() if family == spec.family)
        raise TTLessonError(f"Scheduler {requested} does not fit {spec.name}; use one of "
                            f"{', '.join(['default', *fitting])}.")
    return requested


def default_steps(spec: ModelSpec, scheduler: str) -> int:
    """Steps when the user gives none: the model's for its own scheduler, fewer for DPM-Solver++."""
    if scheduler == "dpm-solver++" and native(spec) != "dpm-solver++":
        return DPM_SOLVER_STEPS
    return spec.steps


def max_steps(spec: ModelSpec) -> int:
    """The most steps a frame can take: SD 1.x's schedulers shift every timestep up by one (``steps_offset``), so
    a 1000th step would ask for timestep 1000 of a model trained on 0-999 and fail mid-frame."""
    return 999 if spec.family == "sd1" else 1000


def build(name: str, shipped):
    """A diffusers scheduler called ``name``, configured from the model's ``shipped`` scheduler."""
    if _CLASS_NAMES.get(type(shipped).__name__) == name or name not in _FAMILY:
        return shipped
    import diffusers

    if name == "dpm-solver++":
        return diffusers.DPMSolverMultistepScheduler.from_config(shipped.config, algorithm_type="dpmsolver++",
                                                                solver_order=2)
    if name == "pndm":
        return diffusers.PNDMScheduler.from_config(shipped.config, skip_prk_steps=True)
    return diffusers.FlowMatchEulerDiscreteScheduler.from_config(shipped.config)
