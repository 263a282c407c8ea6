"""Exceptions whose message is one sentence a learner can act on.

Every error that bad input or a missing prerequisite can cause is a `TTLessonError`; the CLI prints its
message on one line and exits 2, and notebooks show it without a traceback. Anything else is a bug.

An error that came from another library's (ttnn's, the Hub's, the operating system's) keeps it as its cause
(``raise ... from err``): ``TTLESSON_DEBUG=1`` prints that cause under the sentence (``describe``). Where a
builtin exception means the same thing, it is a base too, so ``except ValueError`` (a storyboard that cannot be
used) or ``except FileNotFoundError`` (no ffmpeg, no tt-metal checkout) catch them as usual.
"""

from __future__ import annotations

import traceback

from .env import debug as debug_requested


class TTLessonError(Exception):
    """An error caused by input or environment, with a message that names the problem and the fix."""


class StoryboardError(TTLessonError, ValueError):
    """A storyboard file that cannot be used as it is."""


class ModelNotAvailableError(TTLessonError):
    """Model weights that are neither cached nor downloadable right now."""


class BackendUnavailableError(TTLessonError):
    """A backend that cannot run on this machine."""


class SettingsChangedError(TTLessonError, FileExistsError):
    """Frames already on disk were made with other settings, and --overwrite was not given."""


class FFmpegNotFoundError(TTLessonError, FileNotFoundError):
    """No ffmpeg binary on PATH and none bundled by imageio-ffmpeg."""


class VideoError(TTLessonError):
    """Frames that cannot be stitched, or a video that came out wrong."""


class FrameCheckError(VideoError):
    """Frames on disk that are missing or differ from what the manifest recorded for them."""


class FolderBusyError(TTLessonError):
    """Another process is writing the same render folder (a second render, stitch or import at once)."""


class PromptTooLongWarning(UserWarning):
    """A prompt longer than the text encoder's context; the encoder will cut it."""


class HardwareSourceError(TTLessonError, ValueError):
    """A saved tt-smi snapshot or sysfs folder, given for detection, that cannot be read."""


class FrameVerificationError(TTLessonError, ValueError):
    """Frames that were not made on the hardware asked for, or a folder with no record of who made them."""


class HubAuthError(TTLessonError):
    """A Hugging Face login state (no token, rejected token, Hub unreachable) that stops what was asked."""


# --- Tenstorrent backend and device-parallel rendering ------------------------------------------------------

class NoTTDeviceError(BackendUnavailableError):
    """The tt backend was asked for on a machine where neither the kernel driver nor ttnn sees a chip."""


class TTMetalNotFoundError(BackendUnavailableError, FileNotFoundError):
    """No tt-metal checkout, or one without the model package the tt backend imports."""


class TTDeviceError(TTLessonError):
    """A Tenstorrent device that did not open, or failed while it ran (often: a bad state after a killed run)."""


class FramesLostError(TTLessonError):
    """A worker died while it was making frames; the others are saved and a re-run makes the lost ones."""


class GatedCheckpointWarning(UserWarning):
    """A model whose weights need an accepted licence and a Hugging Face login before they can be downloaded."""


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived (a job scheduler, ``kill``, a kernel shutting down): unwinds like Ctrl-C, so every
    ``with``/``finally`` on the way out runs and only whole frames stay; ``exit_status`` is 143, as a shell reports."""

    exit_status = 128 + 15  # SIGTERM


def describe(err: BaseException, debug: bool | None = None) -> str:
    """The error's one sentence; with ``TTLESSON_DEBUG=1`` (or ``debug``) followed by the traceback of its cause."""
    sentence = " ".join(str(err).splitlines())  # one line even where a file name in it holds a line break
    if debug is None:
        debug = debug_requested()
    cause = err.__cause__
    if not debug or cause is None:
        return sentence
    return sentence + "\n\ncaused by (TTLESSON_DEBUG=1):\n" + "".join(traceback.format_exception(cause)).rstrip()
