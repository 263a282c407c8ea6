"""After the lesson: Stable Diffusion 3.5 Large where this machine can run it, and what it needs where it cannot.

SD 3.5 Large runs through tt-metal's tt_dit pipeline on the systems that pipeline has parallel presets for (a T3K
or Wormhole QuietBox, a Wormhole Galaxy, a 4-chip Blackhole QuietBox), never on a single chip or an N300; its
checkpoint is gated on the Hugging Face Hub. ``sd35_plan`` says, without opening a device, whether both hold
here; ``lesson.try_sd35`` then renders the first frames of the storyboard with it — or shows the plan's reasons.

The system is judged as ``ttlesson detect`` judges it (``ttlesson.tenstorrent.presets``: the system mesh ttnn
reports for these cards, and tt_dit's presets for it); the tt backend checks the real mesh shape when it opens
the device. None of this has run on silicon.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field

MODEL = "sd35-large"
CPU_MEMORY_GIB = 60  # float32 weights of about 13 billion parameters, plus working memory
GPU_MEMORY_GIB = 32  # bfloat16 weights with the T5 encoder; not tried by this project


@dataclass(frozen=True)
class SD35Plan:
    runnable: bool
    where: str  # the system it would run on, in words ("" when it cannot run here)
    reasons: list[str] = field(default_factory=list)  # why it cannot run here, one sentence each
    needs: list[str] = field(default_factory=list)  # what running it takes, one sentence each
    instead: str = ""  # what the learner can do here instead ("" where it runs)

    def __str__(self) -> str:
        head = (f"SD 3.5 Large can run here: {self.where}." if self.runnable
                else "SD 3.5 Large cannot run here:")
        instead = [f"Instead: {self.instead}"] if self.instead else []
        return "\n".join([head, *[f"  - {reason}" for reason in self.reasons], "What it needs:",
                          *[f"  - {need}" for need in self.needs], *instead])

    def _repr_html_(self) -> str:
        head = (f"<p><b>SD 3.5 Large can run here:</b> {html.escape(self.where)}.</p>" if self.runnable
                else "<p><b>SD 3.5 Large cannot run here:</b></p>")
        reasons = "".join(f"<li>{html.escape(reason)}</li>" for reason in self.reasons)
        needs = "".join(f"<li>{html.escape(need)}</li>" for need in self.needs)
        instead = f"<p><b>Instead:</b> {html.escape(self.instead)}</p>" if self.instead else ""
        return head + (f"<ul>{reasons}</ul>" if reasons else "") + f"<p>What it needs:</p><ul>{needs}</ul>" + instead


def sd35_plan(report=None) -> SD35Plan:
    """Whether SD 3.5 Large can run on this machine, and what it needs; opens no device, asks no network."""
    from ..machine import detect
    from ..models import REGISTRY
    from ..setup import hf
    from ..tenstorrent.presets import SD35_SYSTEMS, sd35_layout, sd35_refusal

    report = report or detect(ttnn=False)
    access = hf.model_access(MODEL)
    download = REGISTRY[MODEL].download_size
    needs = [f"A Tenstorrent system tt-metal's tt_dit pipeline has presets for: {SD35_SYSTEMS}. A single N150 or "
             "P150 and an N300 are too small (SD 1.4 runs on those).",
             "tt-metal built from source with its tt_dit package (models/tt_dit, or models/experimental/tt_dit in "
             "older releases), and ttlesson installed in its python_env.",
             f"The checkpoint stabilityai/stable-diffusion-3.5-large ({download}): gated on the "
             "Hub, so accept its licence on the model's page and log in (ttlesson auth login) before the first run.",
             f"Without Tenstorrent hardware, the torch backend can run it on an NVIDIA GPU with about "
             f"{GPU_MEMORY_GIB} GB of memory (not tried by this project); on a CPU it would need about "
             f"{CPU_MEMORY_GIB} GB of memory and hours per 1024×1024 frame."]
    reasons = []
    system = report.tt_system
    layout = sd35_layout(system) if system else None
    if not report.tt_device or system is None:
        reasons.append("There is no Tenstorrent device here, and ttlesson runs SD 3.5 Large only through "
                       "tt-metal on one of the systems named below.")
    elif layout is None:
        reasons.append(sd35_refusal(system))
    elif not report.ttnn.installed:
        reasons.append("ttnn is not installed in this Python: run from tt-metal's python_env.")
    if access.cached != "complete" and access.offline:
        reasons.append(f"SD 3.5 Large's checkpoint is not in the local Hugging Face cache and HF_HUB_OFFLINE is "
                       f"set: it downloads ({download}) only on a connected machine.")
    elif access.needs_login and not access.token:
        reasons.append(str(access))
    where = ""
    if not reasons:
        assert layout is not None  # no reason against it: the system has an SD 3.5 layout
        opened = "×".join(map(str, layout.mesh_shape))
        where = (f"the {system.name} (opened as a {opened} mesh), through tt-metal's tt_dit pipeline (the tt "
                 "backend checks the real mesh shape)")
    return SD35Plan(runnable=not reasons, where=where, reasons=reasons, needs=needs,
                    instead=_instead() if reasons else "")


def _instead() -> str:
    """What to do where SD 3.5 Large cannot run. No model here stands in for it: the tiny model is a 128-pixel
    SD 1.4-shaped UNet, SD 3.5 Large an MMDiT."""
    from ..presenting import lever

    return (f"make the film with SD 1.4 ({lever('model', 'sd14')}), the lesson's model, which runs on one chip of "
            "every Tenstorrent card and, slowly, on a CPU or GPU; render SD 3.5 Large frames on a machine with one "
            "of the systems above.")
