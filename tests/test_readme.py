"""The README names every command the CLI has, and the two commands for a fresh machine."""

from pathlib import Path

import typer

from pipelines.cli import app

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def commands(cmd=None, prefix=()):
    cmd = cmd or typer.main.get_command(app)
    for name, sub in cmd.commands.items():
        if getattr(sub, "commands", None):
            yield from commands(sub, prefix + (name,))
        else:
            yield " ".join(prefix + (name,))


def test_readme_names_every_command():
    found = sorted(commands())
    assert len(found) >= 5
    missing = [c for c in found if f"headshot {c}" not in README]
    assert missing == []


def test_readme_shows_the_two_fresh_machine_commands():
    assert "make demo" in README and "make test" in README
