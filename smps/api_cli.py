"""What the commands that talk to a running node's REST API share (``smps trace``,
``smps screen``): the ``--url`` and ``--token`` options, one request, the API's
errors in an operator's words, and the handler that wants a token.

Going through the API rather than the database means a change made by a command
is audited and reaches the running node at once. Exit status of such a command:
0 done, 1 the API refused or could not be reached, 2 bad usage.
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

import msgspec

from smps.errors import SmpsError

DEFAULT_URL = "http://127.0.0.1:8080"
PREFIX = "/api/v1"
TIMEOUT = 10.0  # seconds for one request
_THIS_HOST = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}  # a wildcard's own address


class ApiError(SmpsError):
    """The API answered with an error (``status``), or could not be reached (0)."""

    def __init__(self, message: str, status: int = 0):
        super().__init__(message)
        self.status = status


def request(args: argparse.Namespace, method: str, path: str, body: Any = None) -> Any:
    """One call to the API at ``args.url`` with ``args.token``; the decoded JSON
    answer (None for 204)."""
    headers = {"Authorization": f"Bearer {args.token}", "Accept": "application/json"}
    data = None
    if body is not None:
        data = msgspec.json.encode(body)
        headers["Content-Type"] = "application/json"
    url = args.url.rstrip("/") + PREFIX + path
    call = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(call, timeout=TIMEOUT) as response:
            payload = response.read()
    except urllib.error.HTTPError as exc:
        raise ApiError(_explain(exc.code, exc.read()), exc.code) from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, ConnectionRefusedError):
            reason = "connection refused (is SMPS running there? see --url)"
        raise ApiError(f"cannot reach the SMPS API at {args.url}: {reason}") from None
    except (TimeoutError, ConnectionError) as exc:
        raise ApiError(f"the SMPS API at {args.url} did not answer: {exc}") from None
    return msgspec.json.decode(payload) if payload else None


def _explain(status: int, payload: bytes) -> str:
    """An error answer as one line an operator can act on."""
    try:
        body = msgspec.json.decode(payload)
        message = body["error"] + (f" (field {body['field']})" if body.get("field") else "")
    except (msgspec.DecodeError, KeyError, TypeError):
        message = payload.decode("utf-8", "replace").strip()[:200] or "no details"
    if status == 401:
        return f"the API refused the token: {message}; check --token or SMPS_TOKEN"
    if status == 403:
        return f"not allowed: {message}"
    return f"{message} ({status})"


def api_path(*segments: str) -> str:
    """An API path from its segments, each quoted."""
    return "".join("/" + urllib.parse.quote(segment, safe="") for segment in segments)


def add_api_options(parser: argparse.ArgumentParser, *, from_config: bool = False) -> None:
    """``--url`` and ``--token``. With ``from_config`` (a command that also takes
    ``-c FILE``), the URL left out is that of the node FILE configures (:func:`node_url`)."""
    fallback = "the running node that -c FILE configures" if from_config else DEFAULT_URL
    parser.add_argument(
        "--url",
        default=os.environ.get("SMPS_URL", None if from_config else DEFAULT_URL),
        help=f"the node's HTTP address (default: $SMPS_URL or {fallback})",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("SMPS_TOKEN"),
        help="API token (default: $SMPS_TOKEN)",
    )


def node_url(config_path: str) -> str | None:
    """The HTTP address of the node running with the configuration at ``config_path``:
    its ``web.listen`` host (a wildcard means this host) and the port its control
    socket reports (``web.listen`` may say port 0); None, said on stderr, when no
    node runs there."""
    from smps.config import load
    from smps.runtime import control_socket

    config = load(config_path)
    report = control_socket.ask(config.node.state_dir, {"cmd": "status"}, timeout=5.0)
    if report is None:
        return None
    host = config.web.listen[0]
    host = _THIS_HOST.get(host, host)
    host = f"[{host}]" if ":" in host else host
    scheme = "https" if config.web.tls is not None else "http"
    return f"{scheme}://{host}:{report['http_port']}"


def with_token(
    action: Callable[[argparse.Namespace], int], forbidden: str
) -> Callable[[argparse.Namespace], int]:
    """``action`` run with an API token (2 without one); an API error is printed
    and is exit status 1, a refusal for the role followed by ``forbidden``."""

    def run(args: argparse.Namespace) -> int:
        if not args.token:
            print("smps: no API token: pass --token or set SMPS_TOKEN", file=sys.stderr)
            return 2
        if args.url is None:
            args.url = node_url(args.config)
            if args.url is None:
                return 1
        try:
            return action(args)
        except ApiError as exc:
            hint = f"; {forbidden}" if exc.status == 403 else ""
            print(f"smps: {exc}{hint}", file=sys.stderr)
            return 1

    return run
