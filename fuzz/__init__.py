"""Fuzzers for what SMPS reads from the network (not collected by pytest).

* Coverage-guided targets for atheris (libFuzzer): ``codec`` (framing, PDU
  codec, TLVs, responses), ``text`` (GSM 7-bit, UCS-2, UDH) and ``session``
  (the session core of both sides fed byte streams on an in-memory transport).
  ``python -m fuzz.run`` runs them all for a time budget (``make fuzz-atheris``).
* ``sockets``: a running node's NE port and SMSC side under hostile peers
  (``make fuzz-sockets``; a short run is in tests/test_socket_fuzz.py).

The hypothesis fuzz properties of the codec stay in bench/fuzz_codec.py (``make fuzz``).
"""
