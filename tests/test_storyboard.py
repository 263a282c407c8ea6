import json

import pytest

from ttlesson import storyboard
from ttlesson.errors import StoryboardError


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_builtin_worlds_fair_is_the_lessons_ten_prompts():
    board = storyboard.load("worlds-fair")
    assert len(board) == 10
    assert board.name == "worlds-fair"
    assert board[0].prompt.startswith("Tenstorrent pavilion at 1964 World's Fair")
    assert board[9].prompt.startswith("thank you for visiting Tenstorrent")
    assert "worlds-fair" in storyboard.builtin_names()


def test_json_with_optional_seed_and_negative_prompt(tmp_path):
    path = write(tmp_path, "s.json", json.dumps([
        {"prompt": " a lighthouse "}, {"prompt": "a harbour", "seed": 42, "negative_prompt": "blurry"}, "a gull"]))
    board = storyboard.load(path)
    assert board.prompts == ["a lighthouse", "a harbour", "a gull"]
    assert board[1].seed == 42 and board[1].negative_prompt == "blurry"
    assert board.seed_for(0, base_seed=100) == 100
    assert board.seed_for(1, base_seed=100) == 42
    assert board.seed_for(2, base_seed=100) == 102


def test_txt_one_prompt_a_line_with_comments_and_blanks(tmp_path):
    path = write(tmp_path, "s.txt", "# my film\n\nfirst shot\n   \n  # indented comment\nsecond shot\n")
    assert storyboard.load(path).prompts == ["first shot", "second shot"]


def test_save_round_trips_and_leaves_no_partial_file(tmp_path):
    board = storyboard.load("worlds-fair")
    board.append("an extra frame", seed=7, negative_prompt="text")
    path = board.save(tmp_path / "mine.json")
    again = storyboard.load(path)
    assert again.frames == board.frames
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.json"]


BAD_JSON = [
    ("not json", '[{"prompt": "a"},\n {"prompt": "b"]', "line 2, column"),
    ("not a list", '{"prompt": "a"}', "expected a JSON list"),
    ("not an object", '[{"prompt": "a"},\n 42]', "line 2 (frame 1): expected an object"),
    ("no prompt", '[{"prompt": "a"},\n\n {"seed": 3}]', 'line 3 (frame 1): no "prompt"'),
    ("empty prompt", '[{"prompt": "   "}]', '"prompt" is empty'),
    ("prompt not text", '[{"prompt": 12}]', '"prompt" must be text'),
    ("unknown key", '[{"prompt": "a", "promt": "b"}]', 'unknown key "promt"; did you mean "prompt"?'),
    ("seed is text", '[{"prompt": "a", "seed": "4"}]', '"seed" must be a whole number'),
    ("seed is bool", '[{"prompt": "a", "seed": true}]', '"seed" must be a whole number'),
    ("seed negative", '[{"prompt": "a", "seed": -1}]', '"seed" must be a whole number'),
    ("seed too big", '[{"prompt": "a", "seed": 4294967296}]', '"seed" must be a whole number'),
    ("negative not text", '[{"prompt": "a", "negative_prompt": ["x"]}]', '"negative_prompt" must be text'),
    ("zero frames", "[]", "holds no frames"),
]


@pytest.mark.parametrize("case,text,expected", BAD_JSON, ids=[case[0] for case in BAD_JSON])
def test_bad_json_gets_one_sentence_naming_file_and_place(tmp_path, case, text, expected):
    path = write(tmp_path, "board.json", text)
    with pytest.raises(StoryboardError) as err:
        storyboard.load(path)
    message = str(err.value)
    assert expected in message
    assert str(path) in message
    assert "\n" not in message


def test_txt_with_only_comments_has_no_frames(tmp_path):
    path = write(tmp_path, "board.txt", "# nothing yet\n\n")
    with pytest.raises(StoryboardError, match="holds no frames"):
        storyboard.load(path)


def test_missing_file_names_it_and_the_builtins(tmp_path):
    with pytest.raises(StoryboardError, match=r"does not exist.*worlds-fair"):
        storyboard.load(tmp_path / "nope.json")


def test_folder_instead_of_file(tmp_path):
    with pytest.raises(StoryboardError, match="is a folder"):
        storyboard.load(tmp_path)


def test_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "board.txt"
    path.write_bytes(b"caf\xe9 scene\n")
    with pytest.raises(StoryboardError, match="not UTF-8"):
        storyboard.load(path)


def test_append_validates_like_a_file():
    board = storyboard.load("worlds-fair")
    with pytest.raises(StoryboardError, match='"prompt" is empty'):
        board.append("  ")


def test_long_prompts_reports_index_and_count():
    board = storyboard.loads('["short", "a b c d e f", "x"]')
    assert storyboard.long_prompts(board, lambda text: len(text.split()) + 2, limit=5) == [(1, 8)]
