"""The proxy core: routing, fan-out, verdicts, tracing."""
