import json

import pytest

from hotrec.embeddings.feature_map import resolve_feature_map
from hotrec.errors import HotrecError

NAMES, ROWS = ["C1", "C2", "C3"], [10, 5000, 100]


def test_empty_map_is_the_full_hybrid_and_a_kind_applies_to_all():
    assert resolve_feature_map("", NAMES, ROWS) == ["both"] * 3
    assert resolve_feature_map("dhe", NAMES, ROWS) == ["dhe"] * 3


def test_rows_rule_sends_large_tables_to_dhe():
    assert resolve_feature_map("dhe_min_rows=100", NAMES, ROWS) == ["table", "dhe", "dhe"]


def test_toml_and_json_files_with_default(tmp_path):
    toml = tmp_path / "map.toml"
    toml.write_text('default = "table"\nC2 = "dhe"\nC3 = "both"\n')
    assert resolve_feature_map(str(toml), NAMES, ROWS) == ["table", "dhe", "both"]
    js = tmp_path / "map.json"
    js.write_text(json.dumps({"C1": "dhe"}))
    assert resolve_feature_map(str(js), NAMES, ROWS) == ["dhe", "both", "both"]


@pytest.mark.parametrize(
    "content, message",
    [
        ('C9 = "dhe"', "unknown feature"),
        ('C1 = "mlp"', "not one of"),
        ('default = "x"', "not one of"),
        ("C1 = ", "not valid"),
    ],
)
def test_bad_map_files_are_one_line_errors(tmp_path, content, message):
    path = tmp_path / "map.toml"
    path.write_text(content)
    with pytest.raises(HotrecError, match=message):
        resolve_feature_map(str(path), NAMES, ROWS)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("dhe_min_rows=abc", "positive integer"),
        ("dhe_min_rows=0", "positive integer"),
        ("missing.json", "does not exist"),
        ("everything", "unknown embedding map"),
    ],
)
def test_bad_map_strings_are_one_line_errors(spec, message):
    with pytest.raises(HotrecError, match=message):
        resolve_feature_map(spec, NAMES, ROWS)


def test_a_map_file_that_is_not_text_is_a_one_line_error(tmp_path):
    path = tmp_path / "map.toml"
    path.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(HotrecError, match="is not valid"):
        resolve_feature_map(str(path), ["a"], [10])
