"""ttlesson: a short video from a storyboard of prompts, one Stable Diffusion frame at a time.

The package behind the lesson's notebooks and the ``ttlesson`` command. Importing it is cheap: the names below
are loaded when first used (PEP 562), and torch, diffusers and ttnn only by the functions that need them. The one
exception is ``render``, bound as the package loads: its module has the same name, and importing the submodule
``ttlesson.render`` later would otherwise replace the function with the module::

    import ttlesson

    board = ttlesson.load_storyboard("worlds-fair")
    result = ttlesson.render(board, "out/demo", model="tiny")
    video = ttlesson.stitch(result.out_dir, fps=2)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .env import __version__
from .lazy import exports
from .render import render

# public name → the module that defines it
_EXPORTS = {
    # storyboard → render → frames → stitch → display
    "load_storyboard": ("storyboard", "load"), "Storyboard": ("storyboard", "Storyboard"),
    "Frame": ("storyboard", "Frame"),
    "RenderResult": ("render", "RenderResult"),
    "stitch": ("video", "stitch"), "probe": ("video", "probe"), "VideoInfo": ("video", "VideoInfo"),
    "verify_frames": ("manifest", "verify_frames"), "FrameOrigins": ("manifest", "FrameOrigins"),
    "detect": ("machine", "detect"), "HardwareReport": ("machine", "HardwareReport"),
    # the progress events render sends to on_event
    **{name: ("progress", name) for name in ("RenderStarted", "WorkerStarted", "ModelLoaded", "WarmedUp",
                                             "FrameStarted", "StepDone", "FrameDone", "Waiting", "RenderFinished")},
    # the errors and warnings
    **{name: ("errors", name) for name in (
        "TTLessonError", "StoryboardError", "ModelNotAvailableError", "BackendUnavailableError",
        "SettingsChangedError", "FFmpegNotFoundError", "VideoError", "FrameCheckError", "FolderBusyError",
        "HardwareSourceError", "FrameVerificationError", "HubAuthError", "NoTTDeviceError", "TTMetalNotFoundError",
        "TTDeviceError", "FramesLostError", "PromptTooLongWarning", "GatedCheckpointWarning")},
}

__all__ = ["__version__", *sorted(["render", *_EXPORTS])]  # pinned by tests/test_package_shape.py


__getattr__, __dir__ = exports(__name__, _EXPORTS, globals())


if TYPE_CHECKING:  # what type checkers and editors see; at run time __getattr__ loads these on first use
    from .errors import (
        BackendUnavailableError,
        FFmpegNotFoundError,
        FolderBusyError,
        FrameCheckError,
        FramesLostError,
        FrameVerificationError,
        GatedCheckpointWarning,
        HardwareSourceError,
        HubAuthError,
        ModelNotAvailableError,
        NoTTDeviceError,
        PromptTooLongWarning,
        SettingsChangedError,
        StoryboardError,
        TTDeviceError,
        TTLessonError,
        TTMetalNotFoundError,
        VideoError,
    )
    from .machine import HardwareReport, detect
    from .manifest import FrameOrigins, verify_frames
    from .progress import (
        FrameDone,
        FrameStarted,
        ModelLoaded,
        RenderFinished,
        RenderStarted,
        StepDone,
        Waiting,
        WarmedUp,
        WorkerStarted,
    )
    from .render import RenderResult
    from .storyboard import Frame, Storyboard
    from .storyboard import load as load_storyboard
    from .video import VideoInfo, probe, stitch
