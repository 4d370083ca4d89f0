"""`improvd-train --help` reads cleanly: plain text, every subcommand described, every option with its default."""

from __future__ import annotations

import argparse
import re

import pytest

from training.cli import parser

FLAGS_WITHOUT_DEFAULT = {"--help", "--json", "--save", "--no-keras"}  # switches: off unless given


def subparsers(top: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_the_top_help_is_plain_text_naming_every_command():
    text = parser().format_help()
    assert "`" not in text and "``" not in text
    for name in ("corpus", "fit", "export", "evaluate"):
        assert re.search(rf"^\s+{name}\s+\w", text, re.M), name


@pytest.mark.parametrize("command", ["corpus", "fit", "export", "evaluate"])
def test_every_option_says_what_it_is_and_its_default(command):
    sub = subparsers(parser())[command]
    assert sub.description, command
    for action in sub._actions:
        assert action.help, (command, action.dest)
        flag = max(action.option_strings, key=len, default=None)
        if flag is not None and flag not in FLAGS_WITHOUT_DEFAULT:
            assert "default" in action.help, (command, flag)
            help_text = sub._get_formatter()._expand_help(action)
            assert "%(" not in help_text


def test_fit_defaults_are_the_settings_defaults():
    from training.train import Settings

    args = parser().parse_args(["fit"])
    defaults = Settings()
    for name in ("seed", "validation", "sequence_length", "lstm_units", "epochs", "patience", "strategy"):
        assert getattr(args, name) == getattr(defaults, name), name
