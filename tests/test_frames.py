"""Importing the images tt-metal's SD 1.4 pytest demo wrote by hand into a render folder."""

import json

import pytest
from helpers import call_cli, one_line_error
from PIL import Image

from ttlesson import manifest, storyboard
from ttlesson.errors import SettingsChangedError, TTLessonError
from ttlesson.fileio import sha256_file
from ttlesson.frames import import_demo_outputs


def demo_folder(path, numbers, size=512):
    """Files named as tt-metal's demo names them: input_data_{i}_512x512_ttnn.png, plus what else it writes."""
    path.mkdir(parents=True, exist_ok=True)
    for number in numbers:
        image = Image.new("RGB", (size, size), (number * 20 % 256, 80, 160))
        image.save(path / f"input_data_{number}_{size}x{size}_ttnn.png")
    (path / "interactive_512x512_ttnn.png").write_bytes(b"not part of the batch")
    return path


@pytest.mark.parametrize("numbers,first", [([1, 2, 3], 1), ([0, 1, 2], 0)])
def test_one_or_zero_based_files_become_frames_in_order(tmp_path, numbers, first):
    src = demo_folder(tmp_path / "demo", numbers)
    result = import_demo_outputs(src, tmp_path / "out")
    frames = manifest.frames_dir(tmp_path / "out")
    assert sorted(p.name for p in frames.iterdir()) == ["frame_000.png", "frame_001.png", "frame_002.png"]
    for index, number in enumerate(numbers):  # the demo's bytes, untouched
        demo_png = src / f"input_data_{number}_512x512_ttnn.png"
        assert (frames / f"frame_{index:03d}.png").read_bytes() == demo_png.read_bytes()
    assert result.first_number == first and "3 demo images" in str(result)

    data = json.loads(manifest.manifest_path(tmp_path / "out").read_text())
    assert data["frame_count"] == 3 and data["storyboard"] == "tt-metal-demo"
    for entry in data["frames"]:
        assert (entry["backend"], entry["model"], entry["seed"], entry["guidance"], entry["steps"]) == (
            "tt-metal-demo", "sd14", 174, 7.5, 50)
        assert "run by hand" in entry["device"] and entry["prompt"] == ""
        assert entry["sha256"] == sha256_file(tmp_path / "out" / entry["file"])


def test_storyboard_gives_the_prompts(tmp_path):
    src = demo_folder(tmp_path / "demo", [1, 2])
    board = storyboard.loads('["a harbour at dawn", "a harbour at dusk", "unused third prompt"]')
    result = import_demo_outputs(src, tmp_path / "out", storyboard=board, steps=30)
    assert [r.prompt for _, r in sorted(result.manifest.frames.items())] == ["a harbour at dawn", "a harbour at dusk"]
    assert {r.steps for r in result.manifest.frames.values()} == {30}


def test_existing_frames_are_kept_unless_overwrite(tmp_path):
    out = tmp_path / "out"
    import_demo_outputs(demo_folder(tmp_path / "first", [1, 2, 3]), out)
    before = {p.name: sha256_file(p) for p in manifest.frames_dir(out).iterdir()}
    second = demo_folder(tmp_path / "second", [0, 1])
    with pytest.raises(SettingsChangedError, match="already holds 3 frames; pass --overwrite"):
        import_demo_outputs(second, out)
    assert {p.name: sha256_file(p) for p in manifest.frames_dir(out).iterdir()} == before
    import_demo_outputs(second, out, overwrite=True)
    assert sorted(p.name for p in manifest.frames_dir(out).iterdir()) == ["frame_000.png", "frame_001.png"]
    assert manifest.load(out).complete and manifest.load(out).frame_count == 2


@pytest.mark.parametrize("numbers,expected", [
    ([], "holds no input_data_<i>_512x512_ttnn.png files"),
    ([1, 2, 4], "has no input_data_3_512x512_ttnn.png between input_data_1_512x512_ttnn.png and input_data_4"),
    ([3, 4], "start at input_data_3_512x512_ttnn.png; the demo numbers from 1"),
])
def test_incomplete_demo_folders_are_refused_before_writing(tmp_path, numbers, expected):
    with pytest.raises(TTLessonError, match=expected):
        import_demo_outputs(demo_folder(tmp_path / "demo", numbers), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_not_a_png_and_short_storyboard(tmp_path):
    src = demo_folder(tmp_path / "demo", [1, 2])
    with pytest.raises(TTLessonError, match="The storyboard has 1 prompts but the demo made 2 images"):
        import_demo_outputs(src, tmp_path / "out", storyboard=storyboard.loads('["one"]'))
    (src / "input_data_2_512x512_ttnn.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(TTLessonError, match="input_data_2_512x512_ttnn.png is not a 512x512 PNG"):
        import_demo_outputs(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli_import_demo_then_stitch(tmp_path):
    src = demo_folder(tmp_path / "demo", [1, 2])
    board = tmp_path / "prompts.json"
    board.write_text('[{"prompt": "one"}, {"prompt": "two"}]')
    proc = call_cli("import-demo", src, "--out", tmp_path / "out", "--storyboard", board)
    assert proc.returncode == 0, proc.stderr
    assert "2 demo images (input_data_1_512x512_ttnn.png …) imported" in proc.stdout
    assert call_cli("stitch", tmp_path / "out", "--output", tmp_path / "demo.mp4").returncode == 0
    assert "pass --overwrite" in one_line_error(call_cli("import-demo", src, "--out", tmp_path / "out"))
