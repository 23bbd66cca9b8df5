"""Compiled hot paths: PDU framing and codec, text decoding, fan-out copies, the
table of originals in flight, latency histograms, the per-PDU session core and
the SMPP state table it follows (plain Python, `states`).

Nothing here touches a socket, an event loop or a clock it was not given: the
session core writes to the transport it was connected to and schedules on the
loop it was created with; the rest is sans-I/O.
"""
