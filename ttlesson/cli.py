"""The ``ttlesson`` command: the notebooks' steps for people who want the result from a terminal.

Bad input exits with status 2 and one line on stderr; Ctrl-C exits 130 and SIGTERM 143, both keeping every
finished frame and removing partial files; a reader that closes the pipe early (``ttlesson detect | head -1``)
ends the command quietly. A standard output that is closed or full does not stop the work: once it is done, one
sentence on stderr says its report was lost, and the exit status is 1. Characters a narrow (ASCII) stdout or
stderr cannot hold are written as escapes.
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
import warnings
from typing import TYPE_CHECKING

from . import env
from .env import __version__
from .errors import Terminated, TTLessonError, describe
from .inputs import MOST_DEVICES

if TYPE_CHECKING:
    from .presenting import Presentable

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE
EXIT_REPORT_LOST = 1


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage mistake in one line instead of a usage block."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from .backends import BACKEND_NAMES

    parser = _Parser(prog="ttlesson", description="Make a short video from a storyboard of prompts, one Stable "
                     "Diffusion frame at a time, on Tenstorrent hardware or a CPU/GPU fallback.")
    parser.add_argument("--version", action="version", version=f"ttlesson {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    render = commands.add_parser("render", help="make one frame per storyboard prompt (resumes where it stopped)",
                                 description="Render a storyboard to OUT/frames/frame_000.png … and OUT/manifest.json. "
                                 "Frames already made with the same settings are kept.")
    _add_render_arguments(render)
    render.set_defaults(run=_run_render)

    stitch = commands.add_parser("stitch", help="stitch rendered frames into an H.264 MP4",
                                 description="Stitch DIR's frames (a render folder, or a folder of frame_NNN.png) "
                                 "into an H.264/yuv420p MP4 and check the result.")
    stitch.add_argument("dir", metavar="DIR", help="render folder (holding frames/ and manifest.json) or frames folder")
    _add_stitch_arguments(stitch)
    stitch.set_defaults(run=_run_stitch)

    video = commands.add_parser("video", help="render, then stitch: storyboard to MP4 in one go",
                                description="Render a storyboard (resuming) and stitch the frames into an MP4; "
                                "prints the MP4's path last.")
    _add_render_arguments(video)
    _add_stitch_arguments(video)
    video.set_defaults(run=_run_video)

    bench = commands.add_parser("bench", help="time model load, first frame, steady frames and stitching here",
                                description="Render a few frames in a scratch folder and report load time, the "
                                "warm-up frame, steady seconds per frame and stitching time. With --arch-only: time "
                                "the full-size architecture (published configs, random weights: no download) per "
                                "step and per frame against this machine's matmul peak, and with --compare against "
                                "diffusers' default pipeline in the same process.")
    bench.add_argument("--model", default=None, help="model to time (default: tiny; with --arch-only: sd14)")
    bench.add_argument("--frames", type=int, default=None, help="frames to render (default: 4; --arch-only: 2 per "
                       "stack, the first being the warm-up)")
    bench.add_argument("--backend", default="auto", choices=BACKEND_NAMES, help="backend (default: auto)")
    bench.add_argument("--device", default=None, metavar="DEV", help="torch device (default: automatic)")
    bench.add_argument("--steps", type=int, default=None, help="denoising steps (default: the model's)")
    bench.add_argument("--size", default=None, metavar="N|WxH", help="frame size (default: the model's)")
    bench.add_argument("--json", nargs="?", const="-", default=None, metavar="FILE",
                       help="the result as JSON: printed, or written to FILE")
    bench.add_argument("--arch-only", action="store_true", help="the full-size sd14 or sd35-large architecture "
                       "from its published configs with random weights, timed per step (default steps: 2)")
    bench.add_argument("--compare", default=None, choices=("diffusers-default",),
                       help="with --arch-only: also time diffusers' own pipeline with its defaults, alternating")
    _add_speed_arguments(bench)
    bench.set_defaults(run=_run_bench)

    train = commands.add_parser("train-tiny", help="train the offline tiny model on drawn World's Fair scenes (CPU)",
                                description="Draw procedural World's Fair scenes, train the tiny model's VAE, text "
                                "encoder and UNet on them from fixed seeds (about an hour on two CPU cores), then "
                                "score how often its frames show what their prompts name. Render with the result: "
                                "--model OUT/pipeline.")
    train.add_argument("--out", required=True, metavar="DIR", help="folder for the weights, the pipeline and the score")
    train.add_argument("--seed", type=int, default=0, help="seed of every random choice (default: 0, as shipped)")
    train.add_argument("--quick", action="store_true", help="a few steps of each stage: checks that training runs "
                       "(the model learns nothing)")
    train.add_argument("--no-score", action="store_true", help="skip rendering and judging the demo prompts")
    train.add_argument("--overwrite", action="store_true", help="replace a model trained earlier in --out")
    train.set_defaults(run=_run_train_tiny)
    _add_machine_commands(commands)
    _add_tt_commands(commands)
    _add_kernel_command(commands)
    _add_serve_command(commands)
    _add_collect_command(commands)
    return parser


def _add_render_arguments(parser: argparse.ArgumentParser) -> None:
    from .backends import BACKEND_NAMES
    from .models import REGISTRY
    from .storyboard import MAX_SEED, builtin_names

    parser.add_argument("storyboard", metavar="STORYBOARD",
                        help="a .json (lesson form) or .txt (one prompt a line) file, or a built-in name: "
                        f"{', '.join(builtin_names())}")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for frames/, manifest.json and the video")
    parser.add_argument("--model", default="sd14",
                        help=f"{', '.join(REGISTRY)} or a local diffusers folder (default: sd14; tiny runs offline)")
    parser.add_argument("--backend", default="auto", choices=BACKEND_NAMES,
                        help="where frames are made (default: auto)")
    parser.add_argument("--device", default=None, metavar="DEV", help="torch device: cpu, cuda, cuda:1 (default: "
                        "CUDA when present, else CPU)")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (default: the model's, sd14: 50)")
    parser.add_argument("--size", default=None, metavar="N|WxH", help="frame size (default: the model's, sd14: 512)")
    parser.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale (sd14: 7.5)")
    parser.add_argument("--seed", type=_whole_value("--seed", MAX_SEED), default=0,
                        help="base seed: frame i uses SEED+i unless it sets its own (0 to 4294967295)")
    parser.add_argument("--overwrite", action="store_true", help="remake frames whose settings changed")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--server", default=None, metavar="URL",
                        help="make the frames on a render service (ttlesson serve) instead of this machine; frames "
                        "and manifest are still written here (default: TTLESSON_SERVER; its token: "
                        "TTLESSON_SERVER_TOKEN or TTLESSON_SERVER_TOKEN_FILE)")
    _add_walk_arguments(parser)
    _add_devices_argument(parser)
    _add_speed_arguments(parser)


def _add_walk_arguments(parser: argparse.ArgumentParser) -> None:
    from .walk import EASINGS, MAX_TRANSITION_FRAMES, SEED_MODES

    parser.add_argument("--transition-frames", type=_whole_value("--transition-frames", MAX_TRANSITION_FRAMES),
                        default=None, metavar="K",
                        help="K in-between frames from each keyframe (storyboard prompt) to the next, walking the "
                        "starting noise and the prompt embeddings; n keyframes give n+(n-1)K frames (default: the "
                        "storyboard's, else 0; a keyframe's own transition_frames wins)")
    parser.add_argument("--easing", default=None, choices=EASINGS,
                        help="spacing of the in-betweens (default: the storyboard's, else linear)")
    parser.add_argument("--seed-mode", default="per-frame", choices=SEED_MODES,
                        help="per-frame: keyframe i uses SEED+i (default); shared: every keyframe uses SEED; mixed: "
                        "SEED's noise shared by all keyframes plus a per-frame part (--noise-mix)")
    parser.add_argument("--noise-mix", type=float, default=None, metavar="S",
                        help="with --seed-mode mixed: the share (0 to 1) of each keyframe's own noise (default: 0.3)")
    parser.add_argument("--colour-coherence", action="store_true",
                        help="keep the palette steady through a walk: each in-between's colours (LAB mean and spread) "
                        "move from its first keyframe's to its second's by its weight; keyframes keep their own")


def _add_speed_arguments(parser: argparse.ArgumentParser) -> None:
    from .backends.torch.precision import PRECISION_CHOICES
    from .models.schedulers import DPM_SOLVER_STEPS, SCHEDULER_CHOICES

    parser.add_argument("--scheduler", default="default", choices=SCHEDULER_CHOICES,
                        help=f"sampler (default: the model's own, sd14: pndm; dpm-solver++ needs fewer steps and "
                        f"defaults to {DPM_SOLVER_STEPS})")
    parser.add_argument("--precision", default="auto", choices=PRECISION_CHOICES,
                        help="numerics of the torch backend (default: auto, the fastest this machine has for the "
                        "model: OpenVINO or bfloat16 on CPUs with native bfloat16, float16 on CUDA, else float32); "
                        "recorded per frame")
    parser.add_argument("--compile", action="store_true", help="torch.compile the UNet (pays off on a GPU over many "
                        "frames; recorded per frame)")


def _whole_value(flag: str, limit: int):
    """An argparse type: a whole number from 0 to ``limit``, refused in one line that names ``flag``; the digits
    are counted before converting, so a 5000-digit argument costs nothing."""
    def parse(text: str) -> int:
        digits = text.strip()
        if digits.isascii() and digits.isdigit() and len(digits) <= len(str(limit)) and int(digits) <= limit:
            return int(digits)
        raise argparse.ArgumentTypeError(f"{flag} {text[:20]!r}{'…' if len(text) > 20 else ''} is not a whole "
                                         f"number from 0 to {limit}")
    return parse


def _add_stitch_arguments(parser: argparse.ArgumentParser) -> None:
    from .video import DEFAULT_CRF, DEFAULT_FPS

    parser.add_argument("--fps", type=float, default=DEFAULT_FPS, help="frames per second (default: 2, 0.5 s a frame)")
    parser.add_argument("--crf", type=int, default=DEFAULT_CRF,
                        help="H.264 quality, 0–51, lower is better (default: 18)")
    parser.add_argument("--crossfade", type=float, default=0.0, metavar="SECONDS",
                        help="dissolve each frame into the next over its last SECONDS (default: 0, cuts)")
    parser.add_argument("--seconds-per-keyframe", type=float, default=None, metavar="S",
                        help="pace a walk by its keyframes: each keyframe and the in-betweens after it last S "
                        "seconds, the last keyframe S, so the video lasts (keyframes)×S; written at 24 fps "
                        "(default: every frame shows 1/--fps)")
    parser.add_argument("--hold", type=float, default=0.0, metavar="SECONDS",
                        help="with --seconds-per-keyframe: how long each keyframe holds before its transition starts "
                        "(default: 0, an even walk)")
    parser.add_argument("--audio", default=None, metavar="FILE",
                        help="mux this audio file as an AAC soundtrack, cut (with a fade-out) or padded with "
                        "silence to the video's length")
    parser.add_argument("--fit-audio", action="store_true",
                        help="with --audio: set --seconds-per-keyframe so the video lasts as long as the audio")
    parser.add_argument("--output", default=None, metavar="FILE", help="video path: .mp4 (or .m4v, .mov, .mkv); "
                        "never a file other than an earlier ttlesson video (default: DIR/<storyboard>.mp4)")


def _run_render(args) -> int:
    result = _render(args)
    print(result)
    print(f"manifest: {result.manifest_path}")
    return 0


def _run_stitch(args) -> int:
    from .video import stitch

    info = stitch(args.dir, args.output, **_stitch_options(args))
    print(info)
    return 0


def _stitch_options(args) -> dict:
    return dict(fps=args.fps, crf=args.crf, crossfade=args.crossfade, seconds_per_keyframe=args.seconds_per_keyframe,
                hold=args.hold, audio=args.audio, fit_audio=args.fit_audio)


def _run_video(args) -> int:
    from .video import check_settings, stitch

    timing, _, _ = check_settings(args.fps, args.crf, args.crossfade, args.seconds_per_keyframe, args.hold, args.audio,
                               args.fit_audio)  # before minutes of rendering, not after
    if timing is None:
        _check_walk_pace(args)
    _check_video_output(args)
    result = _render(args)
    print(result)
    info = stitch(result.out_dir, args.output, **_stitch_options(args))
    print(f"video: {info}")
    print(info.path)
    return 0


def _check_walk_pace(args) -> None:
    """A video paced by its keyframes, planned from the storyboard before any frame is rendered: a pace too short
    for the walk, a crossfade that does not fit it, a soundtrack too long or short are told now, not after."""
    from . import storyboard
    from .video import check_audio, plan_walk, walk_keyframes

    board = storyboard.load(args.storyboard)  # --transition-frames is in range: the parser checked it
    keyframes, count = walk_keyframes(board.transition_gaps(args.transition_frames))
    soundtrack = check_audio(args.audio) if args.fit_audio else None
    plan_walk(keyframes, count, args.seconds_per_keyframe, args.hold, args.crossfade, soundtrack)


def _check_video_output(args) -> None:
    """``--output`` checked before the render: not a folder, a video name, not inside the render folder's frames."""
    if args.output is None:
        return
    from . import manifest
    from .inputs import user_path
    from .video import FrameSource, check_output

    out = user_path(args.out)
    check_output(args.output, FrameSource(manifest.frames_dir(out), out, "video", render_dir=out))


def _run_bench(args) -> int:
    json_path = _bench_json_path(args.json)  # before the benchmark's seconds, not after
    result: Presentable
    if args.arch_only:
        from .bench import full_size as bench_arch

        if args.compile or args.backend == "tt" or args.device not in (None, "cpu"):
            raise TTLessonError("--arch-only times the torch backend on this CPU; leave --compile, --device and "
                                "--backend tt out.")
        result = bench_arch.run(model=args.model or "sd14", size=args.size,
                                steps=2 if args.steps is None else args.steps,
                                frames=2 if args.frames is None else args.frames, compare=args.compare,
                                precision=args.precision, scheduler=args.scheduler,
                                on_line=lambda text: print(text, file=sys.stderr, flush=True))
    else:
        from .bench.this_machine import run

        if args.compare:
            raise TTLessonError("--compare needs --arch-only (it times diffusers' pipeline on the full-size "
                                "architecture); add --arch-only.")
        result = run(model=args.model or "tiny", frames=4 if args.frames is None else args.frames,
                     backend=args.backend, device=args.device, steps=args.steps, size=args.size,
                     scheduler=args.scheduler, precision=args.precision, compile=args.compile)
    if json_path is not None:
        from .fileio import write_atomic

        write_atomic(json_path, result.to_json() + "\n")
        print(result)
        print(f"json: {args.json}")
    else:
        print(result.to_json() if args.json else result)
    return 0


def _bench_json_path(text: str | None):
    """``--json FILE`` checked: a file name in a folder that takes files; None when the JSON is printed instead."""
    if text is None or text == "-":
        return None
    from .fileio import writable_folder
    from .inputs import user_path

    path = user_path(text, "--json")
    if path.is_dir():
        raise TTLessonError(f"--json {text} is a folder; give a file name in it, e.g. --json {path / 'bench.json'}.")
    writable_folder(path.parent, f"--json {text}: its folder")
    return path


def _run_train_tiny(args) -> int:
    import dataclasses

    from .offline import judge, training

    plan = dataclasses.replace(training.TrainingPlan.quick() if args.quick else training.TrainingPlan(),
                               seed=args.seed)
    result = training.train(args.out, plan, overwrite=args.overwrite)
    if not args.no_score:
        prompts = judge.demo_prompts()[::12] if args.quick else None
        score = judge.score(str(result.pipeline_dir), judge.shipped_judge(), result.out_dir / "judged",
                                 prompts=prompts)
        judge.write_score(score, result.out_dir / "score.json")
        print(f"prompt following, {score}")
        print(f"prompt following, shipped tiny: {judge.shipped_score()}")
    print(result.pipeline_dir)
    return 0


def _render(args):
    from .progress import TqdmProgress
    from .render import render

    _use_tt_parallel(args)
    display = None if args.quiet else TqdmProgress()
    try:
        return render(args.storyboard, args.out, model=args.model, backend=args.backend, device=args.device,
                      steps=args.steps, size=args.size, guidance=args.guidance, seed=args.seed,
                      overwrite=args.overwrite, devices=args.devices, scheduler=args.scheduler,
                      precision=args.precision, compile=args.compile, transition_frames=args.transition_frames,
                      easing=args.easing, seed_mode=args.seed_mode, noise_mix=args.noise_mix,
                      colour="lab" if args.colour_coherence else None, server=args.server, on_event=display)
    finally:
        if display is not None:
            display.close()


# --- detect, doctor, auth, verify: the machine, its set-up, the Hub login, and who made the frames ----------

def _add_machine_commands(commands) -> None:
    detect = commands.add_parser(
        "detect", help="list Tenstorrent cards, ttnn, NVIDIA GPUs and the CPU, and the backend auto picks",
        description="Say what this machine can make frames on, from the kernel driver, tt-smi and ttnn, without "
        "opening a device; and which backend auto picks, in one sentence.")
    detect.add_argument("--json", action="store_true", help="print the report as JSON")
    detect.add_argument("--sysfs-root", metavar="DIR", help="read a copy of /sys (or of /sys/class/tenstorrent) "
                        "instead of this machine's; live tt-smi is then not run")
    detect.add_argument("--tt-smi-snapshot", metavar="FILE", help="read a saved `tt-smi -s` output instead of "
                        "running tt-smi")
    detect.add_argument("--ttnn", action="store_true", help="also import ttnn and ask how many chips it sees "
                        "(seconds; on real chips this starts UMD's cluster). Done anyway for a mock cluster "
                        "(TT_METAL_MOCK_CLUSTER_DESC_PATH)")
    detect.set_defaults(run=_run_detect)

    doctor = commands.add_parser(
        "doctor", help="check the lesson's set-up: each line ok / warn / fail with its fix",
        description="Check TT_METAL_HOME, its python_env, PYTHONPATH, TT_METAL_ARCH_NAME, ttnn, ffmpeg, disk space, "
        "the Hugging Face login and package versions. Exits 1 when a check fails.")
    doctor.add_argument("--json", action="store_true", help="print the checklist as JSON")
    doctor.add_argument("--ttnn", action="store_true", help="also import ttnn and ask it for chips (seconds)")
    doctor.add_argument("--tt", action="store_true", help="run the Tenstorrent checks even on a machine with no "
                        "card, where they are otherwise one n/a line (--ttnn implies it)")
    doctor.add_argument("--room", action="store_true", help="check a workshop room instead (TTLESSON_ROOM's "
                        "settings): kernels, devices or the render service, the shared model cache, the disk and "
                        "attendees per hour (renders one tiny frame to time it)")
    doctor.add_argument("--attendees", type=int, default=20, metavar="N", help="with --room: attendees to plan "
                        "for (default: 20)")
    doctor.set_defaults(run=_run_doctor)

    auth = commands.add_parser("auth", help="Hugging Face login: status, whoami, login",
                               description="The Hugging Face token (shown masked, never in full) and model access.")
    actions = auth.add_subparsers(dest="action", metavar="ACTION", required=True)
    status = actions.add_parser("status", help="is a token set, where from, and what each model needs (no network)")
    status.add_argument("--json", action="store_true", help="print as JSON")
    status.set_defaults(run=_run_auth_status)
    actions.add_parser("whoami", help="ask the Hub whose token it is (network)").set_defaults(run=_run_auth_whoami)
    actions.add_parser("login", help="log in with huggingface_hub's prompt").set_defaults(run=_run_auth_login)

    fetch = commands.add_parser(
        "fetch", help="download a model's files into the Hugging Face cache now, checked (e.g. before a workshop)",
        description="Download everything MODEL's pipeline needs into the Hugging Face cache (HF_HOME or "
        "HF_HUB_CACHE), with progress; run it again to resume a download cut short. Each file is then checked "
        "against the Hub's hash. A room reads the cache offline: HF_HUB_CACHE=... HF_HUB_OFFLINE=1.")
    fetch.add_argument("model", metavar="MODEL", help="sd14 or sd35-large (sd35-large needs ttlesson auth login "
                       "after accepting its licence); tiny builds the offline model into TTLESSON_CACHE")
    fetch.set_defaults(run=_run_fetch)

    verify = commands.add_parser("verify", help="say which device made each frame of a render folder",
                                 description="Read DIR/manifest.json and say which backend and device made each "
                                 "frame; with --expect tt, exit 2 unless every frame was made on Tenstorrent hardware.")
    verify.add_argument("dir", metavar="DIR", help="render folder (holding manifest.json)")
    verify.add_argument("--expect", choices=["tt"], help="fail unless every frame was made on this hardware")
    verify.set_defaults(run=_run_verify)


def _run_fetch(args) -> int:
    from . import models
    from .models.hub import fetch

    spec = models.resolve(args.model)
    if spec.name in models.TINY_MODELS:  # built from the package into TTLESSON_CACHE, which a room may share
        print(f"{spec.name}: built in {models.local_folder(spec)} (a room shares it read-only with "
              "TTLESSON_CACHE set to that cache for every attendee).")
        return 0
    if spec.is_local:
        hub_models = [name for name, known in models.REGISTRY.items() if not known.is_local]
        raise TTLessonError(f"{args.model} is a folder already here, not a model on the Hub; fetch one of: "
                            f"{', '.join(hub_models)}.")
    print(fetch(spec))
    return 0


def _run_detect(args) -> int:
    from .machine import detect

    report = detect(args.sysfs_root, args.tt_smi_snapshot, ttnn=True if args.ttnn else None)
    _print_report(report, args.json)
    return 0


def _run_doctor(args) -> int:
    if args.room:
        from .notebook import room_check

        if not 1 <= args.attendees <= 10_000:
            raise TTLessonError(f"--attendees {args.attendees} is out of range; give a whole number from 1 to 10000.")
        report = room_check.run(args.attendees)
        _print_report(report, args.json)
        return 0 if report.ok else 1
    from .setup.doctor import run

    report = run(ttnn=args.ttnn, tt=args.tt)
    _print_report(report, args.json)
    return 0 if report.ok else 1


def _print_report(report, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(report.to_json())
    else:
        print(report)


def _run_auth_status(args) -> int:
    import json

    from .setup import hf

    state = hf.status()
    access = [hf.model_access(name) for name in hf.known_models()]
    if args.json:
        print(json.dumps({"status": state.to_dict(), "models": [item.to_dict() for item in access]}, indent=2))
    else:
        print("\n".join(map(str, [state, *access])))
    return 0


def _run_auth_whoami(args) -> int:
    from .setup import hf

    print(hf.whoami())
    return 0


def _run_auth_login(args) -> int:
    from .setup import hf

    print(hf.login())
    return 0


def _run_verify(args) -> int:
    from .manifest import verify_frames

    origins = verify_frames(args.dir, expect=args.expect)
    print(origins)
    if origins.problem:
        print(f"ttlesson verify: error: {origins.problem}", file=sys.stderr)
        return EXIT_USAGE
    return 0
# --- several devices, Tenstorrent self-test, tt-metal demo import ----------------------------------------------

def _add_devices_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--devices", default=None, type=_devices_value, metavar="N|all",
                        help="make frames on N devices at once, or all: Tenstorrent chips (--backend tt), GPUs, or "
                        "CPU worker processes; frames are the same as with one device (default: 1)")
    parser.add_argument("--tt-parallel", choices=["submesh", "processes"], default=None,
                        help="how --backend tt uses several chips: submesh (one process, one pipeline per chip, "
                        "remote chips included; the default) or processes (one process per PCIe chip, "
                        "TT_VISIBLE_DEVICES; the fallback if submesh fails on an N300 or T3K)")


def _use_tt_parallel(args) -> None:
    """``--tt-parallel`` reaches the tt backend as TTLESSON_TT_PARALLEL (what a notebook would set)."""
    if getattr(args, "tt_parallel", None):
        os.environ[env.TT_PARALLEL] = args.tt_parallel


def _devices_value(text: str) -> int | str:
    if text == "all":
        return text
    allowed = f"give a whole number from 1 to {MOST_DEVICES}, or all to use every device this machine has"
    if not (text.isascii() and text.isdigit()):
        raise argparse.ArgumentTypeError(f"--devices {text!r} is not understood; {allowed}")
    if not 1 <= int(text) <= MOST_DEVICES:
        raise argparse.ArgumentTypeError(f"--devices {text} is out of range; {allowed}")
    return int(text)


def _add_tt_commands(commands) -> None:
    check = commands.add_parser("check-tt", help="self-test: tt-metal's demo frame on this machine's Tenstorrent chip",
                                description="Make tt-metal's SD 1.4 demo frame (its first prompt, seed 174, 50 steps) "
                                "on the first Tenstorrent chip, compare it with the demo's own image when there is "
                                "one, and print a report to paste into a bug report (versions, board, mesh, times). "
                                "tt-metal's log goes to DIR/check-tt-tt-metal.log. Exits 1 when the frame differs "
                                "from the demo's.")
    check.add_argument("--steps", type=int, default=50, help="denoising steps (default: 50, as tt-metal's demo)")
    check.add_argument("--out", default=".", metavar="DIR", help="folder for ttlesson_1_512x512_ttnn.png and the log, "
                       "where the demo's input_data_1_512x512_ttnn.png is looked for (default: here)")
    check.add_argument("--demo-image", default=None, metavar="FILE", help="the demo's image to compare with "
                       "(default: input_data_1_512x512_ttnn.png in DIR or $TT_METAL_HOME)")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.set_defaults(run=_run_check_tt)

    demo = commands.add_parser("import-demo", help="turn tt-metal demo images into a render folder",
                               description="Copy the input_data_<i>_512x512_ttnn.png files that tt-metal's SD 1.4 "
                               "pytest demo wrote into DIR/frames/frame_000.png … with a manifest, ready to stitch.")
    demo.add_argument("src", metavar="SRC", help="the folder the demo ran in")
    demo.add_argument("--out", required=True, metavar="DIR", help="render folder to create")
    demo.add_argument("--storyboard", default=None, metavar="FILE", help="the prompt file the demo ran with "
                      "(records each frame's prompt)")
    demo.add_argument("--steps", type=int, default=50, help="steps the demo ran with (default: 50, its own)")
    demo.add_argument("--overwrite", action="store_true", help="replace frames already in DIR")
    demo.set_defaults(run=_run_import_demo)


def _run_check_tt(args) -> int:
    from .backends.tt.selftest import run_check

    result = run_check(args.out, steps=args.steps, demo_image=args.demo_image)
    print(result.to_json() if args.json else result)
    if result.ok and not env.text(env.MOCK_CLUSTER):  # made on a real chip: the notebooks may say so
        from .tenstorrent.silicon import record_run

        recorded = record_run(result)
        if not args.json:
            print(f"recorded in {recorded}: the notebooks now say that this machine made frames on silicon")
    return 0 if result.ok else 1


def _run_import_demo(args) -> int:
    from .frames import import_demo_outputs

    result = import_demo_outputs(args.src, args.out, storyboard=args.storyboard, overwrite=args.overwrite,
                                 steps=args.steps)
    print(result)
    print(f"manifest: {args.out}/manifest.json")
    return 0


def _add_kernel_command(commands) -> None:
    kernel = commands.add_parser("kernel", help="register this Python environment as a Jupyter kernel",
                                 description="Jupyter kernels for the environment ttlesson runs in (where ttnn lives).")
    actions = kernel.add_subparsers(dest="action", metavar="ACTION", required=True)
    install = actions.add_parser("install", help="register this environment as a kernel (ipykernel)",
                                 description="Register this Python as a Jupyter kernel, with the tt-metal variables "
                                 "of this shell (TT_METAL_HOME, PYTHONPATH, …), so notebooks can run where ttnn is.")
    install.add_argument("--name", default=None, help="kernel name (default: from the environment, e.g. "
                         "ttlesson-python-env)")
    install.add_argument("--display-name", default=None, help="name shown in JupyterLab's kernel menu")
    install.add_argument("--sys-prefix", action="store_true", help="install into this environment instead of "
                         "for the user")
    install.set_defaults(run=_run_kernel_install)


def _run_kernel_install(args) -> int:
    from .setup.kernel import install

    print(install(args.name, args.display_name, prefix=sys.prefix if args.sys_prefix else None))
    return 0


# --- serve: one render service for a room or a farm ----------------------------------------------------------

def _add_serve_command(commands) -> None:
    from .backends.protocol import DEFAULT_PORT
    from .models import REGISTRY

    serve = commands.add_parser(
        "serve", help="a render service: owns this host's devices (or a Ray cluster's) and makes frames for clients",
        description="Start one Ray actor per device (Tenstorrent card, GPU, or CPU slots; for SD 3.5 Large one per "
        "Tenstorrent node of 4 cards or more, over all its cards) on this host or on every host of a Ray cluster, "
        "each loading the model once, and answer HTTP: render --server URL, the notebooks "
        "with TTLESSON_SERVER, or tt-inference-server's POST /v1/images/generations. Needs ttlesson[serve].")
    serve.add_argument("--model", action="append", default=None, metavar="NAME",
                       help=f"a model to hold: {', '.join(REGISTRY)} (repeat for several; default: sd14)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine "
                       "only; any other needs a token)")
    serve.add_argument("--port", type=_whole_value("--port", 65535), default=DEFAULT_PORT,
                       help=f"port to listen on (default: {DEFAULT_PORT})")
    serve.add_argument("--address", default=None, metavar="HOST:PORT",
                       help="the Ray cluster to join (ray start --head prints it; auto: the one on this host); "
                       "default: start one on this host")
    serve.add_argument("--tokens", default=None, metavar="FILE",
                       help="one 'name token' line per client: each gets its own name in the status and the queue")
    serve.add_argument("--token-file", default=None, metavar="FILE",
                       help="a file holding one shared token (default: TTLESSON_SERVER_TOKEN; the token is never "
                       "given on the command line, where ps shows it)")
    serve.add_argument("--threads", type=_whole_value("--threads", 256), default=1,
                       help="torch threads per CPU actor, and the cores each reserves (default: 1)")
    serve.add_argument("--cpu-actors", type=_whole_value("--cpu-actors", 256), default=None, metavar="N",
                       help="CPU actors per host without accelerators (default: its cores / --threads)")
    serve.add_argument("--per-client", type=_whole_value("--per-client", 1024), default=None, metavar="N",
                       help="frames one client may have on devices at once (default: no cap; clients take turns)")
    serve.add_argument("--warm-up", type=_whole_value("--warm-up", 1000), default=None, metavar="STEPS",
                       help="before serving, each device compiles and captures for frames of STEPS steps (a "
                       "Tenstorrent card: minutes, once); give the steps the room will ask for")
    serve.add_argument("--warm-up-size", default=None, metavar="N|WxH", help="with --warm-up: the frame size "
                       "(default: the model's own)")
    serve.set_defaults(run=_run_serve)


def _run_serve(args) -> int:
    from pathlib import Path

    from .serve import ServiceOptions, read_tokens, serve

    tokens: dict[str, str] = {}
    if args.tokens:
        tokens.update(read_tokens(Path(args.tokens)))
    shared = _read_token_file(args.token_file) if args.token_file else env.text(env.SERVER_TOKEN)
    if shared:
        tokens[shared] = ""
    if args.threads < 1 or args.cpu_actors == 0 or args.per_client == 0:
        raise TTLessonError("--threads, --cpu-actors and --per-client count from 1.")
    if args.warm_up_size is not None:
        from .inputs import parse_size

        parse_size(args.warm_up_size)
    options = ServiceOptions(models=tuple(args.model or ["sd14"]), address=args.address, threads=args.threads,
                             cpu_actors=args.cpu_actors, per_client=args.per_client, warm_up_steps=args.warm_up,
                             warm_up_size=args.warm_up_size)
    serve(options, host=args.host, port=args.port, tokens=tokens, announce=lambda line: print(line, flush=True))
    return 0


def _read_token_file(path: str) -> str:
    from .backends.protocol import read_token

    token = read_token(path, "--token-file")
    if len(token) < 8:
        raise TTLessonError(f"--token-file {path} holds a token shorter than 8 characters; use a long random one.")
    return token


# --- collect: a workshop's finale --------------------------------------------------------------------------

def _add_collect_command(commands) -> None:
    from .video.reel import DEFAULT_TITLE_SECONDS, REEL_NAME

    collect = commands.add_parser(
        "collect", help="a workshop's finale: every attendee's film in one reel, each after a title card",
        description="Find each attendee's film (a work folder holding manifest.json, frames/ and the stitched "
        "video, or a drop folder holding one such folder per attendee, taken by name), and stitch one H.264 reel "
        "at 24 fps, without sound: before each film a title card with the attendee's name, the film's length and "
        "where its frames were made (Tenstorrent, or the device the manifest records). Folders without a video "
        "are listed as skipped, with the command that makes one. Put --names last.")
    collect.add_argument("sources", nargs="+", metavar="SOURCE",
                         help="an attendee's work folder, or a drop folder of them (the folder's name is the name)")
    collect.add_argument("--output", default=None, metavar="FILE",
                         help=f"reel path: .mp4 (or .m4v, .mov, .mkv); never a file other than an earlier ttlesson "
                         f"video (default: {REEL_NAME} in the first SOURCE when that is a drop folder)")
    collect.add_argument("--title-seconds", type=float, default=DEFAULT_TITLE_SECONDS, metavar="S",
                         help=f"how long each title card shows (default: {DEFAULT_TITLE_SECONDS:g})")
    collect.add_argument("--names", nargs="+", default=None, metavar="NAME",
                         help="the attendees' names, one per film in the order found (default: the folders' names)")
    collect.set_defaults(run=_run_collect)


def _run_collect(args) -> int:
    from .video.reel import collect

    reel = collect(args.sources, args.output, title_seconds=args.title_seconds, names=args.names)
    print(reel)
    return 0


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    _replace_unencodable_characters()
    try:
        args = build_parser().parse_args(argv)
    except BrokenPipeError:  # ttlesson --help | head -1
        return _closed_pipe()
    warnings.showwarning = _show_warning
    report = _ReportStream(sys.stdout)
    sys.stdout = report
    try:
        return _run_command(args, report)
    finally:
        sys.stdout = report.original
        report.close()


def _run_command(args, report: _ReportStream) -> int:
    previous = _raise_on_sigterm()
    try:
        return _status_with_report(args.command, args.run(args), report)
    except TTLessonError as err:
        print(f"ttlesson {args.command}: error: {describe(err)}", file=sys.stderr)
        return EXIT_USAGE
    except Terminated as stop:  # SIGTERM: from our handler, or the tt backend's while it holds a device
        print(f"ttlesson {args.command}: stopped (SIGTERM); {_what_is_kept(args.command)}", file=sys.stderr)
        return stop.exit_status
    except KeyboardInterrupt:
        print(f"ttlesson {args.command}: interrupted; {_what_is_kept(args.command)}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return _closed_pipe()
    except OSError as err:  # the machine said no where ttlesson did not expect it: still one sentence, not a trace
        from .fileio import os_error_sentence

        where = err.filename or "a file ttlesson needed"
        print(f"ttlesson {args.command}: error: {os_error_sentence(err, where)}.", file=sys.stderr)
        return EXIT_USAGE
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        _flush_quietly()


def _status_with_report(command: str, status: int, report: _ReportStream) -> int:
    """The command's exit status; if its report was lost on stdout, one sentence on stderr and at least 1."""
    _flush_quietly()  # a full disk behind stdout shows only when the last of the report is flushed
    if report.lost is None:
        return status
    print(f"ttlesson {command}: error: the work is done, but its report could not be written to standard output: "
          f"{report.lost}.", file=sys.stderr)
    return status or EXIT_REPORT_LOST


STDOUT_CLOSED = "it is closed; run the command with standard output open (a terminal, a pipe or > FILE) to see it"


class _ReportStream:
    """Standard output while a command runs. A write that fails (stdout closed, or its disk full) is noted in
    ``lost`` instead of raised, so the work still finishes; what follows goes to /dev/null. A reader that closed
    the pipe (``| head``) still raises BrokenPipeError: the command then stops quietly."""

    def __init__(self, stream):
        self.original = stream
        self.lost = None if stream is not None else STDOUT_CLOSED
        self._stream = stream if stream is not None else _devnull_for_closed_stdout()

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            raise
        except OSError as err:
            self._note(err)
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            raise
        except OSError as err:
            self._note(err)

    def close(self) -> None:
        """Close the /dev/null stream that stood in for a closed stdout; the real stdout stays open."""
        if self._stream is not self.original:
            self._stream.close()

    def __getattr__(self, name: str):  # fileno, isatty, encoding, buffer: the real stream's
        return getattr(self._stream, name)

    def _note(self, err: OSError) -> None:
        if self.lost is None:
            self.lost = _why_stdout_failed(err)
        _point_at_devnull(self._stream)  # what is still buffered, and the interpreter's last flush, must not fail


def _why_stdout_failed(err: OSError) -> str:
    if err.errno == errno.EBADF:
        return "it is closed or open only for reading; run the command with standard output open for writing " \
            "(a terminal, a pipe or > FILE) to see it"
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return "the disk behind it is full; free some space, or send it to a file on another disk (> FILE)"
    return f"writing failed ({err.strerror or err}); send it to a terminal, a pipe or a file (> FILE)"


def _devnull_for_closed_stdout():
    """A /dev/null stream in place of a closed stdout. File descriptor 1 gets /dev/null too, so that no file the
    command opens becomes fd 1, where a child process (ffmpeg) would write into it."""
    try:
        os.fstat(1)
    except OSError:
        _point_at_devnull(1)
    return open(os.devnull, "w", encoding="utf-8")


def _point_at_devnull(stream) -> None:
    """Make ``stream``'s file descriptor (or the number itself) /dev/null; a stream without one is left as it is."""
    try:
        target = stream if isinstance(stream, int) else stream.fileno()
        devnull = os.open(os.devnull, os.O_WRONLY)
        if devnull != target:
            os.dup2(devnull, target)
            os.close(devnull)
    except (AttributeError, OSError, ValueError):  # no stream (None), or no descriptor (StringIO)
        pass


def _replace_unencodable_characters() -> None:
    """On a narrow stdout or stderr (PYTHONIOENCODING=ascii) write '–', '×' and '→' as escapes instead of
    failing with UnicodeEncodeError after the work is done."""
    for stream in (sys.stdout, sys.stderr):
        if getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):
            try:
                stream.reconfigure(errors="backslashreplace")
            except (OSError, ValueError):  # already failing: _ReportStream reports stdout
                pass


def _what_is_kept(command: str) -> str:
    if command == "stitch":
        return "the earlier video, if any, is untouched."
    if command == "collect":
        return "the earlier reel, if any, is untouched."
    if command == "fetch":
        return "the files already fetched are kept; run the same command to fetch the rest."
    return "finished frames are kept, run the same command to resume."


def _raise_on_sigterm():
    """Turn SIGTERM into ``Terminated`` in the main thread; returns the handler it replaced (None: not set)."""
    def terminated(signum, frame):
        raise Terminated

    try:
        return signal.signal(signal.SIGTERM, terminated)
    except ValueError:  # not the main thread (main() called from a thread): leave signals alone
        return None


def _closed_pipe() -> int:
    """The reader of stdout went away (``| head``): stop quietly, as Unix tools do."""
    _point_at_devnull(sys.stdout)  # the interpreter's final flush must not fail again
    return EXIT_BROKEN_PIPE


def _flush_quietly() -> None:
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _closed_pipe()
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    sys.exit(main())
