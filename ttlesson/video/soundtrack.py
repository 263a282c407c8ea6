"""The soundtrack a video may carry (``--audio``): the file checked, and its length read, before anything runs."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import VideoError
from ..fileio import os_error_sentence
from ..inputs import user_path
from .ffmpeg import file_header


@dataclass(frozen=True)
class Soundtrack:
    path: Path
    duration: float  # seconds, as the file's header says


def check_audio(audio: str | os.PathLike) -> Soundtrack:
    """The soundtrack file checked: it exists and ffmpeg finds an audio stream in it; its length in seconds."""
    path = user_path(audio, "audio=")
    if not path.exists():
        raise VideoError(f"--audio {path} does not exist; give the path of an audio file (.mp3, .wav, .m4a …).")
    if not path.is_file():
        raise VideoError(f"--audio {path} is not a file; give the path of an audio file (.mp3, .wav, .m4a …).")
    try:
        open(path, "rb").close()
    except OSError as err:  # else ffmpeg's failure to open it would read as "no sound"
        raise VideoError(f"--audio {path} cannot be read: {os_error_sentence(err, path, 'read')}.") from err
    header = file_header(path)
    duration = re.search(r"Duration: (\d+):(\d+):([\d.]+)", header)
    if not re.search(r"Stream #\S+.*?: Audio:", header) or not duration:
        raise VideoError(f"--audio {path} holds no sound ffmpeg can read; give an audio file (.mp3, .wav, .m4a …).")
    hours, minutes, seconds = duration.groups()
    length = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    if length <= 0:
        raise VideoError(f"--audio {path} is empty (0 s of sound); give an audio file with sound in it.")
    return Soundtrack(path, length)
