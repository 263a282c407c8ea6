"""Stitching with the real ffmpeg (PATH, or the binary the imageio-ffmpeg wheel ships)."""

import os
import sys

import pytest
from helpers import one_line_error, run_cli
from PIL import Image

from ttlesson import video
from ttlesson.errors import FFmpegNotFoundError, VideoError


def frames_folder(tmp_path, count=4, size=(64, 48), start=0):
    folder = tmp_path / "frames"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + count):
        Image.new("RGB", size, (40 * i % 255, 90, 160)).save(folder / f"frame_{i:03d}.png")
    return folder


def test_render_folder_to_h264_checked(rendered, tmp_path):
    result, _ = rendered
    info = video.stitch(result.out_dir, tmp_path / "film.mp4")
    assert (info.codec, info.pix_fmt, info.frames, info.fps) == ("h264", "yuv420p", 10, 2.0)
    assert info.duration == pytest.approx(5.0, abs=0.05)
    assert (info.width, info.height) == (128, 128)
    assert info.path.is_file() and info.size_bytes == info.path.stat().st_size
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no partial file left


def test_default_output_is_named_after_the_storyboard(rendered):
    result, _ = rendered
    info = video.stitch(result.out_dir, fps=4)
    assert info.path == result.out_dir / "worlds-fair.mp4"
    assert info.duration == pytest.approx(2.5, abs=0.05) and info.frames == 10


def test_probe_reads_back_what_was_written(rendered, tmp_path):
    written = video.stitch(rendered[0].out_dir, tmp_path / "a.mp4", crf=30)
    assert video.probe(written.path) == written


def test_odd_sized_frames_become_even(tmp_path):
    folder = frames_folder(tmp_path, size=(65, 33))
    info = video.stitch(folder)
    assert (info.width, info.height) == (64, 32) and info.frames == 4
    assert info.path == tmp_path / "video.mp4"


def test_incomplete_render_is_refused(rendered, tmp_path):
    import shutil

    out = tmp_path / "partial"
    shutil.copytree(rendered[0].out_dir / "frames", out / "frames")
    shutil.copy(rendered[0].manifest_path, out / "manifest.json")
    from ttlesson import manifest

    book = manifest.load(out)
    for index in (6, 7, 8, 9):
        del book.frames[index]
    book.save(out)
    with pytest.raises(VideoError, match=r"holds 6 of 10 frames \(frame_006.png is missing\); run ttlesson render"):
        video.stitch(out)


@pytest.mark.parametrize("arrange,expected", [
    (lambda tmp: (tmp / "frames").mkdir(), "has no frame_000.png"),
    (lambda tmp: frames_folder(tmp, count=2, start=1), "has no frame_000.png, so the frames after it"),
    (lambda tmp: (frames_folder(tmp, count=2), frames_folder(tmp, count=1, start=2, size=(32, 32))),
     "frame_002.png is 32×32 but earlier frames are 64×48"),
    (lambda tmp: (frames_folder(tmp, count=1), (tmp / "frames" / "frame_001.png").write_text("no png")),
     "frame_001.png is not a whole image"),
])
def test_unusable_frame_folders(tmp_path, arrange, expected):
    arrange(tmp_path)
    with pytest.raises(VideoError, match=expected):
        video.stitch(tmp_path / "frames")


def test_bad_fps_and_crf(tmp_path):
    folder = frames_folder(tmp_path)
    with pytest.raises(VideoError, match="--fps 0 is out of range"):
        video.stitch(folder, fps=0)
    with pytest.raises(VideoError, match="--crf 60 is out of range"):
        video.stitch(folder, crf=60)


def test_not_a_video(tmp_path):
    path = tmp_path / "x.mp4"
    path.write_text("hello")
    with pytest.raises(VideoError, match="is not a video ffmpeg can read"):
        video.probe(path)


def test_ffmpeg_found_on_path_or_bundled():
    exe = video.find_ffmpeg()
    assert os.access(exe, os.X_OK)


def test_missing_ffmpeg_is_one_sentence(monkeypatch, tmp_path):
    # No ffmpeg on PATH, and imageio-ffmpeg pointed (by its own documented variable) at nothing.
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(tmp_path / "no-ffmpeg"))
    with pytest.raises(FFmpegNotFoundError, match="ffmpeg was not found on PATH"):
        video.find_ffmpeg()


def test_missing_ffmpeg_from_the_cli(tmp_path):
    folder = frames_folder(tmp_path)
    proc = run_cli("stitch", folder, env={"PATH": os.path.dirname(sys.executable),
                                          "IMAGEIO_FFMPEG_EXE": str(tmp_path / "no-ffmpeg")})
    assert "ffmpeg was not found" in one_line_error(proc)
    assert sorted(p.name for p in folder.iterdir()) == [f"frame_00{i}.png" for i in range(4)]


def colours_of(path):
    """The mean colour of every frame of a video, decoded by the real ffmpeg."""
    import subprocess

    raw = subprocess.run([video.find_ffmpeg(), "-v", "error", "-i", str(path), "-vf", "scale=1:1", "-f", "rawvideo",
                          "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
    return [tuple(raw[i:i + 3]) for i in range(0, len(raw), 3)]


def test_crossfade_holds_each_frame_then_dissolves_into_the_next(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, colour in enumerate(["red", "blue", "lime"]):
        Image.new("RGB", (64, 64), colour).save(folder / f"frame_{i:03d}.png")
    info = video.stitch(folder, tmp_path / "fade.mp4", fps=2, crossfade=0.25)
    assert (info.fps, info.frames) == (24.0, 36) and info.duration == pytest.approx(1.5, abs=0.05)
    colours = colours_of(info.path)
    assert colours[0][0] > 240 and colours[5][0] > 240  # red held for the first quarter second
    red, _, blue = colours[9]
    assert 80 < red < 180 and 80 < blue < 180  # halfway through the dissolve: purple
    assert colours[14][2] > 240 and colours[-1][1] > 240  # then blue held, and the last frame green


def test_crossfade_longer_than_a_frame_is_refused(tmp_path):
    with pytest.raises(VideoError, match=r"--crossfade 1 does not fit --fps 2: each frame shows for 0.5 s .*; give "
                                         r"--crossfade 0.5, or 0 for cuts\."):
        video.stitch(frames_folder(tmp_path), crossfade=1.0)


def test_the_command_in_the_work_folder_makes_the_same_video(tmp_path):
    import shlex
    import subprocess

    frames_folder(tmp_path)
    info = video.stitch(tmp_path / "frames", tmp_path / "film.mp4")
    typed = info.command_in(tmp_path)
    assert "frames/frame_%03d.png" in typed and typed[-2:] == ("film.mp4", "-y")  # the final name, not the partial
    made = info.path.rename(tmp_path / "by-ttlesson.mp4")
    subprocess.run(shlex.join(typed), shell=True, cwd=tmp_path, check=True, capture_output=True)
    assert video.probe(info.path).facts == info.facts and colours_of(info.path) == colours_of(made)


def moving_square(tmp_path, lefts=(8, 24, 40)):
    """Stills of a white square moving right on black, one still per left edge."""
    from PIL import ImageDraw

    folder = tmp_path / "frames"
    folder.mkdir()
    for i, left in enumerate(lefts):
        image = Image.new("RGB", (64, 64), "black")
        ImageDraw.Draw(image).rectangle([left, 24, left + 15, 39], fill="white")
        image.save(folder / f"frame_{i:03d}.png")
    return folder


def bright_columns(path, frame):
    """The columns where row 32 of a video's frame is bright, decoded by the real ffmpeg."""
    import subprocess

    raw = subprocess.run([video.find_ffmpeg(), "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "gray",
                          "-"], capture_output=True, check=True).stdout
    row = raw[frame * 64 * 64 + 32 * 64:][:64]
    return [column for column, value in enumerate(row) if value > 200]


def test_minterpolate_invents_motion_and_shows_every_still(tmp_path):
    info = video.stitch_minterpolate(moving_square(tmp_path), tmp_path / "smooth.mp4")
    assert (info.fps, info.frames) == (24.0, 36) and info.duration == pytest.approx(1.5, abs=0.05)
    assert "[s1]tpad=stop=2:stop_mode=clone[s2];[s2]minterpolate=fps=24:mi_mode=mci[s3]" in info.command_line
    assert bright_columns(info.path, 0) == list(range(8, 24))
    # halfway from the second still to the third: the whole square midway, not two half-bright ones (a dissolve)
    assert bright_columns(info.path, 18) == list(range(32, 48))
    assert bright_columns(info.path, 35) == list(range(40, 56))  # the last still is held to the end


def test_minterpolate_from_a_render_is_checked_like_a_stitch(rendered, tmp_path):
    info = video.stitch_minterpolate(rendered[0].out_dir, tmp_path / "smooth.mp4")
    assert info.facts == "120 frames at 24 fps = 5.0 s, h264/yuv420p, 128×128"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    with pytest.raises(VideoError, match=r"--fps 24 leaves nothing for minterpolate to invent .* give --fps below 24"):
        video.stitch_minterpolate(rendered[0].out_dir, tmp_path / "fast.mp4", fps=24)
