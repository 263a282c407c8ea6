"""ttlesson: a short video from a storyboard of prompts, one Stable Diffusion frame at a time.

The package behind the lesson's notebooks and the ``ttlesson`` command. Importing it is cheap: torch,
diffusers and ttnn are imported only by the functions that need them.
"""

from importlib.metadata import PackageNotFoundError, version

from .errors import TTLessonError
from .storyboard import Frame, Storyboard
from .storyboard import load as load_storyboard

try:
    __version__ = version("ttlesson")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"

__all__ = ["Frame", "Storyboard", "TTLessonError", "load_storyboard", "__version__"]
