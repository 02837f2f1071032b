"""One help format for every ``cyclegan`` command: plain metavars (``DATAROOT``, not
``TRAIN.DATAROOT``), each default shown once, descriptions without reStructuredText markup."""

from __future__ import annotations

import argparse
import re

# :class:`~cyclegan.x.Name` -> Name, :func:`f` -> f, ``code`` -> code
_ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|obj):`~?([^`]+)`")
_LITERAL = re.compile(r"``([^`]+)``")
_DEFAULT_IN_HELP = re.compile(r"\[[^\]]*\]\s*$")


def plain(text: str) -> str:
    """``text`` without Sphinx roles and literal quotes."""
    text = _ROLE.sub(lambda m: m.group(1).rpartition(".")[2] if m.group(0).count("~") else m.group(1), text)
    return _LITERAL.sub(r"\1", text)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and epilogs keep their line breaks (they hold examples), minus markup."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return super()._fill_text(plain(text), width, indent)

    def _get_default_metavar_for_optional(self, action: argparse.Action) -> str:
        return action.dest.rpartition(".")[2].upper()

    def _get_help_string(self, action: argparse.Action) -> str:
        text = plain(action.help or "")
        shown = "%(default)" in text or _DEFAULT_IN_HELP.search(text)
        trivial = action.default in (None, False, argparse.SUPPRESS) or action.nargs == 0
        if shown or trivial or not action.option_strings:
            return text
        return text + " (default: %(default)s)"


def use_everywhere(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Give ``parser`` and all its sub-command parsers the :class:`HelpFormatter`."""
    parser.formatter_class = HelpFormatter
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.values(action.choices):  # those built so far (cli.main builds the rest on use)
                use_everywhere(sub)
    return parser
