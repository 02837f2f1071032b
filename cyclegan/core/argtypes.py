"""argparse value types shared by every command (and the app's flags): each rejects a bad value
with a message that says what is expected. Imports only argparse, so inference code can use it."""

from __future__ import annotations

import argparse
import math


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def nonneg_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def finite_float(text: str) -> float:
    """A float that is neither NaN nor infinite (``--lr inf`` would overflow the weights)."""
    value = float(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def nonneg_float(text: str) -> float:
    value = finite_float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return value


def positive_float(text: str) -> float:
    value = finite_float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text}")
    return value


def image_size(text: str) -> int:
    """A side the ResNet generator accepts: a multiple of 4, at least 4."""
    value = int(text)
    if value < 4 or value % 4:
        raise argparse.ArgumentTypeError(f"must be a multiple of 4 and at least 4, got {text}")
    return value


def int_between(low: int, high: int, what: str = "a number"):
    """A type accepting integers low..high inclusive, e.g. JPEG quality or a port."""

    def parse(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be {what} {low}..{high}, got {text}")
        return value

    parse.__name__ = f"int_{low}_{high}"
    return parse


def ema_decay(text: str) -> float:
    """An EMA decay: 0 (off) or a number in (0, 1), typically 0.99..0.9999."""
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be 0 (off) or between 0 and 1, e.g. 0.999, got {text}")
    return value


def shrink_factor(text: str) -> float:
    """A factor that lowers something: a number in (0, 1]."""
    value = float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1], e.g. 0.5, got {text}")
    return value
