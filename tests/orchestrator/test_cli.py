"""The command line as a newcomer meets it: commands listed, --version, help with examples, and a
mistake answered in one line, exit 2, before torch or Ray is imported."""

from __future__ import annotations

import subprocess
import sys

import pytest

from orchestrator.cli import EXIT_USER_ERROR, main

COMMANDS = ("sweep", "list", "check", "sync", "report", "rank", "validate")


def test_no_command_lists_every_command_with_examples(capsys):
    assert main([]) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    for command in COMMANDS:
        assert f"    {command} " in err
    assert "orchestrator sweep search_spaces/layers.yaml" in err and "exit status:" in err


def test_version_is_the_installed_one(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exit:
        main(["--version"])
    assert exit.value.code == 0 and capsys.readouterr().out.strip() == f"orchestrator {version('orchestrator')}"


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_has_help_with_an_example(command, capsys):
    with pytest.raises(SystemExit) as exit:
        main([command, "--help"])
    out = capsys.readouterr().out
    assert exit.value.code == 0 and f"orchestrator {command}" in out and "example" in out


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["swep", "x.yaml"], "unknown command 'swep' (did you mean 'sweep'?)"),
        (["sweep"], "the following arguments are required: spec"),
        (["sweep", "x.yaml", "--trails", "3"], "unrecognized arguments: --trails 3"),
        (["sweep", "x.yaml", "--trials", "many"], "argument --trials: invalid int value: 'many'"),
        (["list", "x.yaml", "--storage", "/tmp"], "give a SPEC or --storage, not both"),
    ],
)
def test_a_command_line_mistake_is_one_line_and_exit_2(argv, expected, capsys):
    try:
        code = main(argv)
    except SystemExit as exit:
        code = exit.code
    err = capsys.readouterr().err
    assert code == EXIT_USER_ERROR
    assert len(err.strip().splitlines()) == 1 and expected in err, err


def test_a_spec_mistake_is_reported_before_torch_ray_or_mlflow_is_imported(tmp_path):
    (tmp_path / "bad.yaml").write_text("experiment: x\nsearch: {trails: 3}\n")
    probe = (
        "import sys; from orchestrator.cli import main; code = main(['sweep', sys.argv[1]]); "
        "print(code, sorted(m for m in ('torch', 'ray', 'mlflow', 'timm') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "bad.yaml")], capture_output=True, text=True)
    assert done.stdout.strip() == "2 []", done.stdout + done.stderr
    assert done.stderr.count("\n") == 1 and "bad.yaml" in done.stderr and "trails" in done.stderr
