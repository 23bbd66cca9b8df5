"""Compiled, sans-I/O hot paths: PDU framing and codec, text decoding, fan-out copies.

Nothing here touches a socket, an event loop or a clock it was not given.
"""
