"""User errors are one printable line of bounded length, whatever text the user supplied."""

import pytest

from orchestrator.cli import main
from orchestrator.errors import MAX_MESSAGE_CHARS, SpecError, UserError, error_line, escape, one_line, shorten


@pytest.mark.parametrize(
    "text,shown",
    [
        ("plain text: fine", "plain text: fine"),
        ("two\nlines", "two\\nlines"),
        ("cr\rtab\t", "cr\\rtab\\t"),
        ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),
        ("bell\x07 del\x7f c1\x9b", "bell\\x07 del\\x7f c1\\x9b"),
        ("bidi\u202eoverride, line\u2028separator", "bidi\\u202eoverride, line\\u2028separator"),
        ("undecodable \udcff byte", "undecodable \\udcff byte"),
        ("accents é and 日本 stay", "accents é and 日本 stay"),
    ],
)
def test_escape_shows_unprintable_characters_as_repr_does(text, shown):
    assert escape(text) == shown
    assert escape(text).isprintable()


def test_shorten_keeps_the_start_and_the_end():
    text = "a" * 100 + "MIDDLE" + "z" * 100
    short = shorten(text, 50)
    assert len(short) == 50 and short.startswith("a") and short.endswith("z") and "..." in short
    assert shorten(text, 50, keep_end=True).endswith("z" * 30)
    assert shorten("short", 50) == "short"


def test_one_line_shortens_each_long_value_and_bounds_the_whole():
    line = one_line("unknown name '" + "x" * 10_000 + "' (did you mean 'resnet50'?)")
    assert "(did you mean 'resnet50'?)" in line and len(line) < 150
    assert len(one_line("word " * 10_000)) == MAX_MESSAGE_CHARS


def test_spec_error_escapes_and_bounds_file_field_and_problem():
    source, field = "/data/" + "d" * 500 + "/bad\nname.yaml", "space.\x1b[2J" + "k" * 500
    error = SpecError(source, field, "got '" + "v" * 10**5 + "'")
    line = error_line(error)
    assert line.startswith("error: /data/") and "bad\\nname.yaml: space.\\x1b[2J" in line
    assert line.isprintable() and len(line) <= MAX_MESSAGE_CHARS and "\n" not in line


def test_error_line_guards_any_user_error():
    line = error_line(UserError("store at http://x\nis down \x1b[31m" + "!" * 1000))
    assert line.startswith("error: store at http://x\\nis down \\x1b[31m") and len(line) <= MAX_MESSAGE_CHARS


def test_the_cli_prints_one_guarded_line(tmp_path, capsys):
    spec = tmp_path / "bad\nname.yaml"
    spec.write_text("experiment: x\n")
    assert main(["validate", str(spec)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad\\nname.yaml: space: required but missing" in err
