"""The screening scenario's rule set (issue "Built-in screening engine"): 10k list
entries, 1k keywords, 20 regular expressions, a URL list of 10k domains and 5
velocity rules, none of which the load's ordinary traffic trips except by chance:
what is measured is the cost of looking, per original.

`smps bench --screening` runs with it (list files written to the run's
directory); bench/test_screening_bench.py times the engine alone with it.
"""

import random
from pathlib import Path

LIST_ENTRIES = 10_000
KEYWORDS = 1_000
REGEXES = 20
DOMAINS = 10_000
VELOCITY_KEYS = ("source", "destination", "pair", "fingerprint", "source")


def screening_section(directory: Path, seed: int = 7) -> dict:
    """The `screening` section, its list files written under ``directory``."""
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    senders = directory / "deny-senders.txt"
    senders.write_text(
        "# 10k denied senders, half numbers, half prefixes\n"
        + "".join(f"8615{rng.randrange(10**9):09d}\n" for _ in range(LIST_ENTRIES // 2))
        + "".join(f"prefix:8616{i:05d}\n" for i in range(LIST_ENTRIES // 2))
    )
    domains = directory / "bad-domains.txt"
    domains.write_text("".join(f"{_word(rng, 10)}.example\n" for _ in range(DOMAINS)))
    keywords = [f"{_word(rng, 6)} {_word(rng, 7)}" for _ in range(KEYWORDS)]
    regexes = [rf"{_word(rng, 5)}\s+at\s+\d+%" for _ in range(REGEXES)]
    rules = [
        {"id": "deny-senders", "type": "list", "field": "source", "file": str(senders)},
        {"id": "spam-words", "type": "keyword", "patterns": keywords},
        {"id": "spam-regex", "type": "regex", "patterns": regexes},
        {"id": "bad-urls", "type": "url", "file": str(domains)},
        {"id": "special", "type": "special", "kinds": ["silent", "wap_push"]},
    ]
    rules += [
        {
            "id": f"velocity-{i}-{key}",
            "type": "velocity",
            "key": key,
            "limit": 1_000_000,
            "window": f"{10 * (i + 1)}s",
        }
        for i, key in enumerate(VELOCITY_KEYS)
    ]
    return {"enabled": True, "rules": rules}


def _word(rng: random.Random, length: int) -> str:
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(length))
