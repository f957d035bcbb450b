import pytest

from hotrec.config import PRESETS, load_config
from hotrec.errors import HotrecError


@pytest.mark.parametrize("name", PRESETS)
def test_presets_load(name):
    cfg = load_config(name)
    assert cfg.model.bottom_mlp[-1] == cfg.model.embedding_dim
    assert cfg.model.top_mlp[-1] == 1


def test_overrides_are_typed():
    cfg = load_config("criteo-kaggle", ["model.top_mlp=[64,1]", "optim.dense_lr=1", "data.path=x"])
    assert cfg.model.top_mlp == (64, 1)
    assert cfg.optim.dense_lr == 1.0 and isinstance(cfg.optim.dense_lr, float)
    assert cfg.data.path == "x"


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.nope=1", "unknown option model.nope"),
        ("bogus.x=1", "unknown config section"),
        ("train.epochs=two", "train.epochs must be int"),
        ("noequals", "section.key=value"),
        ("placement.lookahead=-2", "placement.lookahead must be >= 0, or -1 for auto"),
        ("train.pad_multiple=-3", "train.pad_multiple must be >= 0, or -1 for auto"),
    ],
)
def test_bad_overrides_are_one_line_errors(override, message):
    with pytest.raises(HotrecError, match=message):
        load_config(None, [override])


def test_unknown_preset():
    with pytest.raises(HotrecError, match="unknown preset"):
        load_config("no-such-preset")
