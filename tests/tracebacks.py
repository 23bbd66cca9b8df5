"""A Python traceback in what a test's subprocess wrote fails the test.

`smps run` survives many exceptions by logging them, and a crashed worker is
restarted: a test that only looks at traffic can pass over both. The nodes' helpers
register their log and output files in ``outputs`` (conftest checks them when the
test ends); the CLI helpers check the stderr they captured with ``assert_none``.
"""

import re
from pathlib import Path

outputs: list[Path] = []
"""Files the current test's subprocesses write their logs or output to."""

_START = re.compile(r"^.*Traceback \(most recent call last\):$", re.MULTILINE)


def found_in(text: str) -> list[str]:
    """Each traceback in ``text``, from the line before it (the log line that said
    what failed) to its exception line."""
    found = []
    for match in _START.finditer(text):
        before = text.rfind("\n", 0, max(match.start() - 1, 0)) + 1
        lines = text[before:].splitlines()
        first = 1 if before < match.start() else 0  # the Traceback line itself
        end = next(
            (i for i, line in enumerate(lines[first + 1 :], first + 1) if line[:1] not in " "),
            len(lines) - 1,
        )
        found.append("\n".join(lines[: end + 1]))
    return found


def assert_none(text: str, source: str) -> None:
    """``text``, the output of ``source``, shows no Python traceback."""
    found = found_in(text)
    assert not found, f"{source} printed a traceback:\n" + "\n\n".join(found)
