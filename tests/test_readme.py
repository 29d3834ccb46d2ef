"""README's two set-up commands stay true: CI runs the test command verbatim."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    return [line.strip() for line in section.splitlines() if line.startswith("    apt-get")]


def test_readme_has_exactly_two_setup_commands():
    main_job, tests = commands()
    assert main_job.endswith("pytest -m interference experiments/")
    assert tests.endswith("&& pytest && bash tests/oldest-pytest.sh")


def test_both_commands_install_into_a_virtual_environment():
    """A stock Debian 12 / Ubuntu 24.04 Python refuses ``pip install`` (externally managed)."""
    for command in commands():
        venv = "python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[dev]'"
        assert venv in command and command.count("pip install") == 1
        assert "python3-venv" in command


def test_ci_runs_the_readme_test_command_verbatim():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert commands()[1] in [line.strip() for line in ci if not line.startswith("#")]
