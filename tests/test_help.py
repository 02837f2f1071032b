"""Every ``cyclegan ... --help`` reads cleanly: plain metavars, each default shown once, no markup."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys

import pytest

from cyclegan.cli.main import build_parser


def _commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    yield prefix, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, prefix + (name,))


COMMANDS = list(_commands(build_parser()))


def problems(text: str) -> list[str]:
    found = []
    if re.search(r"\b[A-Z_]+\.[A-Z_]+\b", text):
        found.append("dotted metavar: " + re.search(r"\b[A-Z_]+\.[A-Z_]+\b", text).group(0))
    if "(default: None)" in text:
        found.append("(default: None)")
    if re.search(r"\]\s*\(default:", text):
        found.append("default shown twice")
    if re.search(r":(class|func|meth|mod|attr|data):`|``", text):
        found.append("reStructuredText markup")
    return found


def test_every_command_is_checked():
    names = {" ".join(p) for p, _ in COMMANDS}
    assert {"train", "translate", "eval domains", "eval fid", "mnist train", "app", "bench"} <= names


@pytest.mark.parametrize("path,parser", COMMANDS, ids=[" ".join(p) or "cyclegan" for p, _ in COMMANDS])
def test_help_is_clean(path, parser):
    assert problems(parser.format_help()) == []


def test_the_check_catches_what_it_should():
    assert len(problems("--dataroot TRAIN.DATAROOT  size [256] (default: None) :class:`X` ``y``")) == 4


def test_help_from_the_command_line():
    r = subprocess.run([sys.executable, "-m", "cyclegan", "eval", "domains", "--help"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and "usage: cyclegan eval domains" in r.stdout and not problems(r.stdout)


def test_eval_descriptions_are_the_modules_own():
    helps = {" ".join(p): parser.format_help() for p, parser in COMMANDS}
    assert "Feature extractors" in helps["eval fid"] and "argparse only" not in helps["eval fid"]
    assert "classifier" in helps["eval domains"]


def test_building_the_parser_loads_no_torch_and_help_answers_at_once():
    code = ("import sys, time; t = time.perf_counter(); from cyclegan.cli.main import build_parser; "
            "p = build_parser(); p.format_help(); print(time.perf_counter() - t, 'torch' in sys.modules, "
            "'numpy' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    seconds, torch_loaded, numpy_loaded = r.stdout.split()
    assert torch_loaded == numpy_loaded == "False", r.stderr
    assert float(seconds) < 0.5
    r = subprocess.run([sys.executable, "-m", "cyclegan", "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "train        train a CycleGAN" in r.stdout and "info" in r.stdout
    # a command's parser is built when it is used, with its own help and the shared format
    r = subprocess.run([sys.executable, "-m", "cyclegan", "trian"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "invalid choice: 'trian' (choose from 'train', 'export'" in r.stderr
