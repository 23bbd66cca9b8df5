"""Benchmarks and fuzz targets use the hypothesis profiles the tests register."""

import tests.conftest  # noqa: F401  (registers and loads the "ci" / "fuzz" profiles)
