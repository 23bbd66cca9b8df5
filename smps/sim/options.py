"""Command-line value types of the simulators (and of `smps bench`): each parses one
option's text and says what is wrong in argparse's one-line usage error."""

import argparse
from collections.abc import Callable
from typing import Any

from smps.config import parse_address, parse_duration
from smps.sim.traffic import Mix, NumberRange


def option_type(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """Turn a parser's ValueError into argparse's one-line usage error."""

    def convert(value: str) -> Any:
        try:
            return parse(value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


def _ratio(value: str) -> float:
    text = value.strip()
    number = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    if not 0.0 <= number <= 1.0:
        raise ValueError(f"{value!r} is not a ratio between 0 and 1 (or 0% and 100%)")
    return number


def parse_rate(value: str) -> float | None:
    if value.strip().lower() == "max":
        return None
    rate = float(value)
    if rate <= 0:
        raise ValueError(f"rate must be > 0 or 'max', not {value!r}")
    return rate


def _positive_duration(value: str) -> float:
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError(f"duration must be > 0, not {value!r}")
    return seconds


def _duration(value: str) -> float:
    seconds = parse_duration(value)
    if seconds < 0:
        raise ValueError(f"duration must be >= 0, not {value!r}")
    return seconds


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError(f"must be a whole number >= 1, not {value!r}")
    return number


def _status(value: str) -> int:
    status = int(value, 0)
    if not 0 <= status <= 0xFFFFFFFF:
        raise ValueError(f"{value!r} is not a command_status")
    return status


def _numbers(value: str) -> list[bytes]:
    numbers = [n.strip() for n in value.split(",") if n.strip()]
    if not numbers or not all(n.isdigit() and len(n) <= 20 for n in numbers):
        raise ValueError(f"{value!r}: expected comma-separated phone numbers")
    return [n.encode() for n in numbers]


address = option_type(parse_address)
ratio = option_type(_ratio)
rate = option_type(parse_rate)
duration = option_type(_duration)
positive_duration = option_type(_positive_duration)
status = option_type(_status)
positive_int = option_type(_positive_int)
numbers = option_type(_numbers)
mix = option_type(Mix.parse)
number_range = option_type(NumberRange.parse)
