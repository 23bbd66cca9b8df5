"""Allow `python -m smps`."""

from smps.cli import main

raise SystemExit(main())
