"""The lesson's own terminal commands, step by step, next to what ttlesson does in their place.

ttlesson saves a learner the typing, but a learner who later works in a plain terminal on a Tenstorrent machine
needs the commands the lesson teaches. Each step's ``ByHand`` holds them, filled in for this machine where that
matters (the tt-metal checkout and which layout of its SD 1.4 demo it holds, Blackhole cards, the work folder in
use), says what ttlesson does instead, and notes where the lesson's command no longer does what it says.

What is said here about tt-metal's demo was read in tt-metal's source; none of it was run (no Tenstorrent device
was available to this project).
"""

from __future__ import annotations

import html
import os
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from .. import env
from ..models import REGISTRY
from ..tenstorrent.arch import Arch
from ..tenstorrent.checkout import SD14_FOLDERS
from .display import preformatted


@dataclass(frozen=True)
class ByHand:
    step: str
    commands: str  # shell lines, as the learner would type them
    ttlesson: str  # what ttlesson does in their place
    notes: list[str] = field(default_factory=list)
    ran: str = ""  # the command ttlesson itself ran, where there is one, as the learner would type it

    def __str__(self) -> str:
        notes = [f"* {note}" for note in self.notes]
        ran = [self.ran] if self.ran else []
        return "\n".join([f"{self.step}, by hand:", self.commands, f"ttlesson instead: {self.ttlesson}", *ran,
                          *notes])

    def _repr_html_(self) -> str:
        notes = "".join(f"<li>{html.escape(note)}</li>" for note in self.notes)
        ran = preformatted(self.ran) if self.ran else ""
        return (f"<p><b>{html.escape(self.step)}, by hand</b> (in a terminal):</p>{preformatted(self.commands)}"
                f"<p><b>ttlesson instead:</b> {html.escape(self.ttlesson)}</p>{ran}"
                + (f"<ul>{notes}</ul>" if notes else ""))


def tt_metal_home() -> str:
    """The tt-metal checkout as the learner would type it: ``$TT_METAL_HOME`` when set, else the lesson's."""
    return env.text(env.TT_METAL_HOME) or "~/tt-metal"


def sd14_demo(home: str | None = None) -> tuple[str, str]:
    """(the SD 1.4 demo's folder inside the checkout, "current"/"older"/"not found") for the checkout here."""
    root = Path(home or tt_metal_home()).expanduser()
    for layout, folder in SD14_FOLDERS.items():
        if (root / folder / "demo" / "demo.py").is_file():
            return folder, layout
    return SD14_FOLDERS["older"], "not found"


def _blackhole_here() -> bool:
    from ..machine import read_kernel_driver

    cards, _ = read_kernel_driver(None)
    return any(card.arch == Arch.BLACKHOLE for card in cards)


def step1() -> ByHand:
    """Step 1: activate tt-metal's environment and export its variables."""
    home = tt_metal_home()
    arch = ("export TT_METAL_ARCH_NAME=blackhole          # this machine has Blackhole cards" if _blackhole_here()
            else "# export TT_METAL_ARCH_NAME=blackhole        # only on Blackhole (P100, P150, P300c)")
    commands = "\n".join([f"source {home}/python_env/bin/activate",
                          f"export TT_METAL_HOME={home}",
                          "export PYTHONPATH=$TT_METAL_HOME:$PYTHONPATH",
                          arch,
                          "cd $TT_METAL_HOME",
                          "which python3                                # should be inside python_env",
                          "tt-smi -s | grep board_type                  # which board the driver sees"])
    return ByHand("Step 1 · Set up the environment", commands,
                  "ttlesson detect and ttlesson doctor read the same facts (the cards, the checkout, the active "
                  "Python, PYTHONPATH, the Blackhole variable) and print the fix for each one that is missing; "
                  "nothing is exported for you, because a notebook's kernel cannot change its own environment.",
                  ["QuietBox 2 images use the tt-installer environment (~/.tenstorrent-venv) and cloud images "
                   "/opt/venv-metal instead of python_env: activate whichever your machine has.",
                   "Jupyter runs the notebooks in its kernel's Python: install ttlesson and start Jupyter from "
                   "inside the activated environment, or the notebooks will not see ttnn."])


def step2() -> ByHand:
    """Step 2: Hugging Face login (which models need it, the notebook's access table says once)."""
    return ByHand("Step 2 · Hugging Face", "hf auth login        # paste a token from huggingface.co/settings/tokens\n"
                  "hf auth whoami       # prints the account the stored token belongs to",
                  "ttlesson auth status shows whether a token is there (masked), ttlesson auth login runs the same "
                  "login, ttlesson auth whoami asks the Hub whose token it is; the notebook shows the same.",
                  ["The lesson's login is optional for SD 1.4 and needed for SD 3.5 Large.",
                   "Older huggingface_hub releases spell the commands huggingface-cli login and "
                   "huggingface-cli whoami."])


def step4(workdir: str | os.PathLike) -> ByHand:
    """Step 4: tt-metal's pytest demo, run from the checkout, and what its first run costs."""
    home = tt_metal_home()
    demo, layout = sd14_demo(home)
    prompts = Path(workdir).expanduser() / "prompts.json"
    commands = "\n".join([f"cd {home}",
                          "pytest --disable-warnings \\",
                          f"  --input-path={shlex.quote(str(prompts))} \\",
                          f"  {demo}/demo/demo.py::test_demo"])
    found = {"current": f"This checkout has the demo in the newer place ({demo}).",
             "older": f"This checkout has the demo in the lesson's place ({demo}).",
             "not found": f"No tt-metal checkout with the demo at {home} here; newer releases keep it in "
                          f"{SD14_FOLDERS['current']}."}[layout]
    return ByHand("Step 4 · Generate the frames", commands,
                  "lesson.render_frames (or ttlesson render) makes one frame per prompt with tt-metal's own "
                  "pipeline on every chip you allow, writes frames/frame_000.png … into the work folder with a "
                  "manifest, keeps the frames already made, and gives each frame its own seed.",
                  [found,
                   f"The first run downloads SD 1.4 ({REGISTRY['sd14'].download_size}, not the lesson's "
                   "'few hundred MB') into the Hugging Face cache, then compiles the kernels and captures the 50-step "
                   "loop as a device trace before the first image (minutes; compiled kernels are cached for later "
                   "runs, the trace is captured again by every run).",
                   "In the tt-metal releases read for this project, test_demo fixes its own input file "
                   "(demo/input_data.json) and exactly 10 prompts, so --input-path does not reach it: to render your "
                   "prompts by hand, copy prompts.json over that file (keep the original).",
                   "The images land in the folder pytest runs in, named input_data_1_512x512_ttnn.png … (numbered "
                   "from 1 in current releases, from 0 in the lesson's text); every prompt starts from the same "
                   "noise (seed 174). Step 5 imports them."])


def step6(info, workdir: str | os.PathLike) -> ByHand:
    """Step 6: the lesson's ffmpeg command, and the one ttlesson's stitch ran (``info``: what it returned), as a
    learner would type it in the work folder."""
    folder = Path(workdir).expanduser()
    lesson = "\n".join([f"cd {typed_path(folder)}",
                        "ffmpeg -framerate 2 -pattern_type glob -i 'frames/frame_*.png' \\",
                        "  -vf 'format=yuv420p,scale=512:512' -c:v libx264 -crf 18 \\",
                        "  tenstorrent_worldsfair_1964.mp4"])
    if not info.command:
        return ByHand("Step 6 · Stitch the video", lesson, "video.stitch builds the command with ffmpeg-python and "
                      "runs it; this video was not stitched in this session, so its command is not known.")
    program = "ffmpeg" if shutil.which("ffmpeg") == info.command[0] else '"$FFMPEG"'
    ran = "\n".join([f"cd {typed_path(folder)}"]
                    + ([f"FFMPEG={shlex.quote(info.command[0])}"] if program != "ffmpeg" else [])
                    + [continued_lines(program, info.command_in(folder)[1:])])
    bundled = ["There is no ffmpeg on this kernel's PATH, so stitch ran the one the imageio-ffmpeg package ships, "
               "named once above as FFMPEG; in a terminal with ffmpeg installed (sudo apt-get install -y ffmpeg) "
               "type ffmpeg in place of \"$FFMPEG\"."] if program != "ffmpeg" else []
    return ByHand("Step 6 · Stitch the video", lesson,
                  "video.stitch built this command with ffmpeg-python and ran it; pasted into a terminal, it makes "
                  "the same video:", ran=ran,
                  notes=bundled + [
                      "-i frames/frame_%03d.png -start_number 0 reads the frames in number order like the lesson's "
                      "glob; stitch first checks that none is missing, since ffmpeg would stop at a gap.",
                      "scale=trunc(iw/2)*2:trunc(ih/2)*2 only rounds odd sizes down to even ones (yuv420p needs "
                      "them); the lesson's scale=512:512 would stretch any frame that is not 512×512.",
                      "-frames:v and -r fix the exact length; -movflags +faststart lets a browser start playing "
                      "before the whole file is there; -y replaces an earlier video without asking.",
                      f"stitch itself had ffmpeg write a hidden partial file, renamed to {info.path.name} only once "
                      "it was decoded again and its codec, pixel format, frame count and duration checked."])


def typed_path(folder: Path) -> str:
    """``folder`` as a learner types it in a shell: ``~/…`` inside the home folder, quoted only where needed."""
    home = Path.home()
    if folder == home:
        return "~"
    if home in folder.parents:
        return "~/" + shlex.quote(str(folder.relative_to(home)))
    return shlex.quote(str(folder))


def continued_lines(program: str, arguments: tuple[str, ...], width: int = 88) -> str:
    """``program arguments…`` as shell lines of about ``width`` characters, continued with a backslash; an
    option stays on one line with its value, and no word is split."""
    words, pending = [], list(arguments)
    while pending:
        word = shlex.quote(pending.pop(0))
        if word.startswith("-") and pending and not pending[0].startswith("-"):
            word += " " + shlex.quote(pending.pop(0))
        words.append(word)
    lines = [program]
    for word in words:
        if len(lines[-1]) + 1 + len(word) > width:
            lines[-1] += " \\"
            lines.append("  " + word)
        else:
            lines[-1] += " " + word
    return "\n".join(lines)


def step7() -> ByHand:
    """Step 7: tt-metal's interactive demo."""
    home = tt_metal_home()
    demo, layout = sd14_demo(home)
    return ByHand("Step 7 · Interactive mode", f"cd {home}\npytest {demo}/demo/demo.py::test_interactive_demo",
                  "the PromptStudio widget keeps the model loaded in the notebook's kernel, shows each image in "
                  "place with its seed and time, and adds good finds to prompts.json.",
                  ["The demo asks for a prompt in the terminal, writes interactive_512x512_ttnn.png in the current "
                   "folder (each new prompt overwrites it), and stops on q.",
                   "test_interactive_demo exists only in older tt-metal releases; newer ones keep the interactive "
                   "loop in demo.py without a test that runs it.",
                   "Every prompt starts from the same noise (seed 174), so only the words change the image."])
