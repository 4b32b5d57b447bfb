import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.cfg_parser import parse_cfg, parse_cfg_text
from utils.base.errors import CfgError


def test_parses_sections_with_line_numbers():
    sections = parse_cfg_text("[net]\nwidth=64\n\n[convolutional]\nfilters=8 # comment\n")
    assert sections[0]["type"] == "net" and sections[0]["width"] == "64"
    assert sections[1] == {"type": "convolutional", "line": 4, "filters": "8",
                           "key_lines": {"filters": 5}}


@pytest.mark.parametrize("text, message, line", [
    ("[net]\n[transformer]\n", "unknown section [transformer]", 2),
    ("[net]\n[convolutional]\nfliters=3\n", "unknown key 'fliters'", 3),
    ("[net]\n[convolutional]\nfilters\n", "expected 'key=value'", 3),
    ("filters=3\n", "before the first [section]", 1),
    ("[convolutional]\nfilters=3\n", "must start with a [net]", 1),
    ("[net]\n", "no layers", 1),
    ("[net]\n[convolutional\n", "malformed section header", 2),
])
def test_bad_cfg_text_names_line(text, message, line):
    with pytest.raises(CfgError) as err:
        parse_cfg_text(text, "bad.cfg")
    assert message in str(err.value)
    assert err.value.path == "bad.cfg" and err.value.line == line
    assert str(err.value).startswith(f"bad.cfg:{line}: ")


def test_missing_file(tmp_path):
    with pytest.raises(CfgError, match="not found"):
        parse_cfg(tmp_path / "nope.cfg")


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("[]=#,\n -abcnetyolofiltersmask0123456789")),
               max_size=200))
def test_parser_fails_only_with_its_own_error(text):
    try:
        parse_cfg_text(text, "fuzz.cfg")
    except CfgError as err:
        assert str(err).startswith("fuzz.cfg")
