"""Simulators and load generators: an SMSC, NEs, the demo."""
