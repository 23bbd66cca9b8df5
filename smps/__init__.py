"""SMPS: an SMPP proxy that copies every short message to several inspection
systems (NEs), combines their verdicts and answers the SMSC exactly once."""

__version__ = "0.1.0"
