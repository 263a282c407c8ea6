"""Frames → a checked H.264 video with ffmpeg: the public surface of ``ttlesson.video``.

``stitching`` holds ``stitch`` and ``stitch_minterpolate``; ``timing`` the exact frame arithmetic; ``stills`` the
frames found and checked; ``soundtrack`` the ``--audio`` file; ``encode`` the output path and the checked write;
``ffmpeg`` the binary and ``probe``; ``reel`` the workshop reel (``ttlesson collect``).
"""

from __future__ import annotations

from .encode import DEFAULT_CRF, check_output
from .ffmpeg import VideoInfo, find_ffmpeg, probe
from .soundtrack import check_audio
from .stills import FrameSource
from .stitching import check_settings, stitch, stitch_minterpolate
from .timing import (
    CROSSFADE_TOLERANCE,
    DEFAULT_FPS,
    Timeline,
    Timing,
    VideoTiming,
    plan_timeline,
    plan_timing,
    plan_walk,
    walk_keyframes,
)

__all__ = [
    "CROSSFADE_TOLERANCE", "DEFAULT_CRF", "DEFAULT_FPS", "FrameSource", "Timeline", "Timing", "VideoInfo",
    "VideoTiming", "check_audio", "check_output", "check_settings", "find_ffmpeg", "plan_timeline", "plan_timing",
    "plan_walk", "probe", "stitch", "stitch_minterpolate", "walk_keyframes",
]
