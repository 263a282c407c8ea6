"""ttlesson collect: every attendee's film in one reel, each after a title card; real ffmpeg, tiny-model frames.

Three attendees' work folders are made once (two renders of two prompts, stitched at different rates and sizes),
in a drop folder with a fourth that has frames but no video yet.
"""

import json
import shutil

import pytest
from helpers import call_cli, one_line_error

from ttlesson import Frame, Storyboard, render, stitch
from ttlesson.video import VideoInfo, probe
from ttlesson.video.reel import REEL_FPS, Film, collect, draw_card

TT_DEVICE = "Tenstorrent wormhole_b0 (chip 0)"
ONE_FRAME = 1 / REEL_FPS


def _work_folder(folder, backend, name, size, fps):
    board = Storyboard(frames=[Frame(f"{name}'s fair pavilion"), Frame(f"{name}'s monorail at dusk")], name=name)
    render(board, folder, model="tiny", backend=backend, steps=1, size=size)
    stitch(folder, folder / "video.mp4", fps=fps)
    return folder


def _say_made_on_tenstorrent(folder):
    """A stand-in for frames made on a Tenstorrent device (there is none here): the manifest says tt, and the
    frames, untouched, still have the SHA-256 it records, so verify_frames trusts it."""
    path = folder / "manifest.json"
    book = json.loads(path.read_text())
    for record in book["frames"]:
        record.update(backend="tt", device=TT_DEVICE)
    path.write_text(json.dumps(book))


@pytest.fixture(scope="module")
def drop(tmp_path_factory, tiny_backend):
    root = tmp_path_factory.mktemp("drop")
    alice = _work_folder(root / "alice", tiny_backend, "alice", 64, fps=2)  # 2 frames: 1.0 s
    _work_folder(root / "Bob", tiny_backend, "bob", "96x64", fps=1)  # 2.0 s, the largest: the reel's size
    carol = root / "carol"
    shutil.copytree(alice, carol, ignore=shutil.ignore_patterns("*.mp4"))
    _say_made_on_tenstorrent(carol)
    stitch(carol, carol / "video.mp4", fps=4)  # 0.5 s
    shutil.copytree(alice, root / "dave", ignore=shutil.ignore_patterns("*.mp4"))  # frames, no video yet
    return root


@pytest.fixture(scope="module")
def collected(drop):
    return call_cli("collect", drop)


def test_a_drop_folder_becomes_one_reel_with_a_title_card_before_each_film(drop, collected):
    assert collected.returncode == 0, collected.stderr
    info = probe(drop / "reel.mp4")
    films = 1.0 + 2.0 + 0.5
    assert (info.codec, info.pix_fmt, info.fps, info.audio) == ("h264", "yuv420p", REEL_FPS, "")
    assert (info.width, info.height) == (96, 64)  # Bob's, the largest; the others padded to it
    assert info.frames == round(films * REEL_FPS) + 3 * 2 * REEL_FPS
    assert info.duration == pytest.approx(films + 3 * 2.0, abs=3 * ONE_FRAME)
    assert not [path for path in drop.iterdir() if path.name.startswith(".")]  # no partial, no cards left


def test_the_table_names_each_attendee_with_length_and_origin(drop, collected):
    lines = collected.stdout.splitlines()
    assert lines[0] == "3 films, each after a 2 s title card:"
    rows = [line.split() for line in lines[2:5]]
    assert [row[0] for row in rows] == ["alice", "Bob", "carol"]  # by name, whatever the case
    assert [" ".join(row[1:3]) for row in rows] == ["1.0 s", "2.0 s", "0.5 s"]
    assert "made on cpu" in lines[2] and "made on cpu" in lines[3]
    assert f"made on {TT_DEVICE}" in lines[4]  # the stand-in
    assert f"dave: no video yet: run ttlesson stitch {drop / 'dave'}" in collected.stdout
    assert lines[-1].startswith(f"reel: {drop / 'reel.mp4'} (h264, yuv420p, 96×64, 228 frames at 24 fps = 9.5 s")


def test_work_folders_with_names_an_unknown_origin_and_the_notebooks_video(drop, tmp_path):
    notebook = tmp_path / "notebook"  # the notebooks' work folder: prompts.json and the lesson's video name
    shutil.copytree(drop / "alice", notebook)
    (notebook / "video.mp4").rename(notebook / "tenstorrent_worldsfair_1964.mp4")
    (notebook / "prompts.json").write_text("[]")
    damaged = tmp_path / "damaged"
    shutil.copytree(drop / "Bob", damaged)
    (damaged / "manifest.json").write_text('{"frames": [')
    reel = collect([notebook, damaged], tmp_path / "reel.mp4", title_seconds=1, names=["Ada", "Grace  Hopper"])
    assert [(film.name, film.where, film.note) for film in reel.films] == [
        ("Ada", "made on cpu", ""), ("Grace Hopper", "origin unknown", "manifest.json unreadable")]
    assert reel.films[0].video.path == notebook / "tenstorrent_worldsfair_1964.mp4"
    assert reel.video.frames == 5 * REEL_FPS and reel.video.duration == pytest.approx(5.0, abs=2 * ONE_FRAME)
    assert "Grace Hopper   2.0 s  origin unknown (manifest.json unreadable)" in str(reel)
    again = collect([notebook, damaged], tmp_path / "reel.mp4", title_seconds=0.5, names=["Ada", "Grace"])
    assert again.video.frames == 4 * REEL_FPS  # an earlier reel is a ttlesson video: replaced


@pytest.mark.parametrize("arrange,args,expected", [
    (lambda drop, tmp: (tmp / "empty").mkdir(), ["{tmp}/empty"], "No film found in {tmp}/empty; give attendees'"),
    (lambda drop, tmp: None, ["{drop}/dave"], "No film to collect: {drop}/dave was skipped (no video yet: run "
                                              "ttlesson stitch {drop}/dave)."),
    (lambda drop, tmp: None, ["{drop}/alice", "{drop}/Bob"], "Give --output FILE: the first SOURCE, {drop}/alice, "
                                                             "is an attendee's own folder"),
    (lambda drop, tmp: None, ["{drop}", "--output", "{drop}/alice/video.mp4"], "is alice's film, which the reel"),
    (lambda drop, tmp: None, ["{drop}", "--names", "A", "B"], "--names gives 2 names but 3 films were found "
                                                              "(alice, Bob, carol)"),
    (lambda drop, tmp: None, ["{drop}", "--title-seconds", "0"], "--title-seconds 0 is out of range"),
    (lambda drop, tmp: None, ["{tmp}/nowhere"], "SOURCE {tmp}/nowhere does not exist"),
])
def test_refusals_are_one_line(drop, tmp_path, arrange, args, expected):
    arrange(drop, tmp_path)
    proc = call_cli("collect", *[arg.format(drop=drop, tmp=tmp_path) for arg in args])
    assert expected.format(drop=drop, tmp=tmp_path) in one_line_error(proc)


def test_a_file_that_is_not_a_ttlesson_video_is_not_replaced(drop, tmp_path):
    notes = tmp_path / "reel.mp4"
    notes.write_text("my notes")
    message = one_line_error(call_cli("collect", drop, "--output", notes))
    assert "already exists and is not a video ttlesson made, so it is not replaced" in message
    assert notes.read_text() == "my notes" and sorted(tmp_path.iterdir()) == [notes]


@pytest.mark.parametrize("sized_font", [True, False])
def test_a_title_card_fills_the_reels_size_with_its_lines(monkeypatch, sized_font):
    from PIL import ImageFont

    if not sized_font:  # Pillow before 10.1: load_default() takes no size; its small font is scaled up
        default = ImageFont.load_default
        monkeypatch.setattr(ImageFont, "load_default", lambda size=None: default() if size is None else
                            (_ for _ in ()).throw(TypeError("load_default() got an unexpected keyword argument")))
    video = VideoInfo(path=None, codec="h264", pix_fmt="yuv420p", width=320, height=240, fps=2.0, frames=10,
                      duration=5.0, size_bytes=0)
    card = draw_card(Film("A very long attendee name indeed", None, video, TT_DEVICE, True), (320, 240))
    assert card.size == (320, 240) and card.getpixel((0, 0)) == card.getpixel((319, 239))  # the background
    columns = [x for x in range(320) if any(sum(card.getpixel((x, y))) > 300 for y in range(240))]
    assert columns and columns[0] >= 10 and columns[-1] <= 310  # text, fitted inside the card's width
