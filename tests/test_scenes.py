"""The procedural World's Fair scenes: deterministic pixels, captions that say what is drawn."""

import json
from collections import Counter

import numpy as np
import pytest

from ttlesson.offline import scenes
from ttlesson.offline.scenes import Scene, named_attributes


def test_a_seed_gives_the_same_scene_and_pixels():
    assert Scene.random(7) == Scene.random(7)
    assert np.array_equal(np.asarray(Scene.random(7).draw()), np.asarray(Scene.random(7).draw()))
    assert not np.array_equal(np.asarray(Scene.random(7).draw()), np.asarray(Scene.random(8).draw()))
    assert Scene.random(7).caption(1) == Scene.random(7).caption(1) != Scene.random(7).caption(2)


def test_draw_makes_an_rgb_image_of_the_asked_size():
    image = Scene.random(3).draw(96)
    assert image.mode == "RGB" and image.size == (96, 96)


def test_fixed_attributes_are_kept_and_the_rest_drawn():
    scene = Scene.random(11, time="night", structure="globe", background=None, crowd=False)
    assert (scene.time, scene.structure, scene.background, scene.crowd) == ("night", "globe", None, False)
    assert scene.labels == {"time": 2, "structure": 2, "palette": scenes.PALETTES.index(scene.palette)}


def test_every_value_occurs_in_a_data_set():
    drawn = scenes.scenes(600)
    for name, values in scenes.ATTRIBUTES.items():
        counts = Counter(getattr(scene, name) for scene in drawn)
        assert set(counts) == set(values)
        assert min(counts.values()) > 600 / len(values) / 2  # roughly balanced
    assert any(scene.background for scene in drawn) and any(scene.crowd for scene in drawn)


@pytest.mark.parametrize("first_seed", [0, 5000, 10_000_000])
def test_captions_name_only_what_the_scene_shows(first_seed):
    named_counts = Counter()
    for scene in scenes.scenes(300, first_seed):
        for variant in range(3):
            caption = scene.caption(variant)
            named = named_attributes(caption)
            for name, value in named.items():
                assert getattr(scene, name) == value, (scene, caption, named)
            named_counts.update(named.keys())
    assert named_counts["structure"] > 0.8 * 900 and named_counts["time"] > 0.8 * 900
    assert named_counts["palette"] > 0.6 * 900


def test_the_storyboards_prompts_are_read_as_they_are_meant():
    from ttlesson import storyboard

    prompts = storyboard.load("worlds-fair").prompts
    assert named_attributes(prompts[0])["structure"] == "dome"
    assert named_attributes(prompts[7]) == {"time": "night", "structure": "dome", "background": "globe"}
    assert named_attributes(prompts[9]) == {"time": "sunset"}
    assert named_attributes(prompts[3]) == {"palette": "orange and teal"}


@pytest.mark.parametrize("prompt, expected", [
    ("fireworks at night over the Unisphere", {"time": "fireworks", "structure": "globe"}),
    ("a rocket, Kodachrome photo, orange and white corporate colors", {"structure": "rocket"}),
    ("monorail and tower", {}),  # two main structures: neither is named
    ("golden hour, geodesic dome, tower in the background, pastel colors",
     {"time": "sunset", "structure": "dome", "background": "tower", "palette": "pastel"}),
    ("SUNNY DAY, Fountains", {"time": "day", "structure": "fountain"}),
    ("domestic towering daydream", {}),  # whole words only
])
def test_named_attributes(prompt, expected):
    assert named_attributes(prompt) == expected


def test_caption_words_are_whole_tokens_of_the_tiny_tokenizer(tmp_path):
    from transformers import CLIPTokenizer

    from ttlesson.models import tiny

    tiny.write_tiny_tokenizer(tmp_path)
    tokenizer = CLIPTokenizer.from_pretrained(tmp_path)
    phrases = [p for table in (scenes.TIME_PHRASES, scenes.STRUCTURE_PHRASES, scenes.PALETTE_PHRASES)
               for options in table.values() for p in options]
    words = {w for phrase in phrases + list(scenes.FILLER_PHRASES + scenes.CROWD_PHRASES)
             for w in phrase.lower().replace(",", " ").replace("'s", " 's").replace("-", " - ").split()}
    split = sorted(w for w in words if w.isalpha() and len(tokenizer(w, add_special_tokens=False).input_ids) != 1)
    assert not split


def _mean(images, channel=None):
    arrays = np.stack([np.asarray(image, dtype=np.float32) for image in images])
    return arrays.mean() if channel is None else arrays[..., channel].mean()


def test_time_of_day_shows_in_the_pixels():
    def frames(time):
        return [Scene.random(seed, time=time).draw(64) for seed in range(12)]

    day, sunset, night = frames("day"), frames("sunset"), frames("night")
    assert _mean(night) < 0.5 * _mean(day)
    assert _mean(sunset, 0) - _mean(sunset, 2) > _mean(day, 0) - _mean(day, 2) + 40  # warmer: more red than blue


def test_scene_lists_are_json_friendly():
    scene = Scene.random(1)
    assert json.loads(json.dumps(scene.__dict__))["seed"] == 1
