"""A frame's identity: what its record stores and compares, derived from the request it was made from."""

import json
from dataclasses import fields, replace

from ttlesson import manifest, models, storyboard
from ttlesson.backends import FrameRequest
from ttlesson.manifest import FrameRecord, Manifest
from ttlesson.render import RenderSettings, WalkSettings, wanted_records

# An in-between with every identity field away from its default (mixed noise, colour coherence, a walk's second
# keyframe), as a record and as ttlesson 0.1 wrote it in manifest.json (a render of BOARD with WALK's settings).
EVERY_FIELD_SET = FrameRecord(
    index=3, prompt="a tower", negative_prompt="fog", seed=7, steps=9, guidance=4.5, width=96, height=80,
    model="tiny-random", backend="tt", scheduler="dpm-solver++", precision="bfloat16", device="cuda:0", seconds=1.5,
    warmup=True, sha256="ab" * 32, keyframe=None, pair=(2, 3), weight=0.25, to_prompt="a bridge",
    to_negative_prompt="rain", to_seed=8, noise_base=5, noise_mix=0.4, colour_match="lab",
    colour_reference="frames 2 and 4 (0123456789abcdef)")
BOARD = '["a lighthouse", {"prompt": "a tower", "negative_prompt": "fog"}]'
WALK = WalkSettings(transition_frames=1, seed_mode="mixed", colour="lab")
WRITTEN_BY_0_1 = """{"schema": 1, "ttlesson": "0.1.0", "storyboard": "storyboard", "frame_count": 3, "frames": [{
  "file": "frames/frame_001.png", "index": 1, "prompt": "a lighthouse", "negative_prompt": null, "seed": 0,
  "steps": 2, "guidance": 2.5, "width": 64, "height": 64, "model": "tiny", "backend": "torch", "scheduler": "pndm",
  "precision": "float32", "device": "cpu", "seconds": 0.053, "warmup": false,
  "sha256": "0afd488f53da26a25722dde316ab97623078aee1360e4d1ab1e2eede0a20483b", "keyframe": null, "pair": [0, 1],
  "weight": 0.5, "to_prompt": "a tower", "to_negative_prompt": "fog", "to_seed": 1, "noise_base": 0,
  "noise_mix": 0.3, "colour_match": "lab", "colour_reference": "frames 0 and 2 (84ff1d845ab5893f)"}]}"""


def test_a_record_stores_and_compares_every_field_of_its_request():
    for item in fields(FrameRequest):
        assert item.name in manifest.IDENTITY_FIELDS, (
            f"FrameRequest.{item.name} decides a frame's pixels, but FrameRecord does not store it: add it to "
            "FrameRecord with the default older manifests should read as, and its check to manifest.RECORD_SCHEMA")


def test_what_made_a_frame_is_compared_and_how_it_went_is_not():
    assert {"model", "backend", "precision", "colour_match", "colour_reference"} <= set(manifest.IDENTITY_FIELDS)
    assert set(manifest.RECORDED_NOT_COMPARED).isdisjoint(manifest.IDENTITY_FIELDS)
    moved = replace(EVERY_FIELD_SET, index=4, device="cpu", seconds=9.0, warmup=False, sha256="")
    assert moved.identity() == EVERY_FIELD_SET.identity() and moved.differences(EVERY_FIELD_SET) == []


def test_every_field_of_a_record_is_read_back_with_its_check():
    for item in fields(FrameRecord):
        assert item.name in manifest.RECORD_SCHEMA, (
            f"FrameRecord.{item.name} has no check in manifest.RECORD_SCHEMA, so a manifest is read without it: add "
            "one (not required: older manifests lack it)")


def test_every_identity_field_round_trips_through_the_manifest():
    defaults = {item.name: item.default for item in fields(FrameRecord)}
    for name in manifest.IDENTITY_FIELDS:
        assert getattr(EVERY_FIELD_SET, name) != defaults[name], (
            f"EVERY_FIELD_SET leaves {name} at its default: give it another value so its round trip is tested")
    book = Manifest(storyboard="s", frame_count=5, frames={3: EVERY_FIELD_SET}, version="0.1.0")
    again = manifest.parse(book.to_json()).frames[3]
    assert again == EVERY_FIELD_SET and again.identity() == EVERY_FIELD_SET.identity()


def test_a_manifest_written_by_ttlesson_0_1_is_the_same_frame_today():
    settings = RenderSettings(models.resolve("tiny"), "torch", steps=2, guidance=2.5, width=64, height=64, seed=0)
    wanted = wanted_records(storyboard.loads(BOARD), settings, WALK)[1]
    written = manifest.parse(WRITTEN_BY_0_1).frames[1]
    assert written.identity() == wanted.identity(), written.differences(wanted)
    assert json.loads(Manifest(frame_count=3, frames={1: written}, version="0.1.0", storyboard="storyboard")
                      .to_json()) == json.loads(WRITTEN_BY_0_1)
