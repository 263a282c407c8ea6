"""Stitching with the real ffmpeg (PATH, or the binary the imageio-ffmpeg wheel ships)."""

import os
import sys

import pytest
from PIL import Image

from conftest import one_line_error, run_cli
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
     "frame_001.png is not an image"),
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
