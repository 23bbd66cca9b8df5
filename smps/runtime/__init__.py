"""The process layout: a master supervising uvloop workers (docs/architecture.md §4)."""
