"""The OpenAPI 3.1 description of ``/api/v1`` (served, without a token, at
``/api/v1/openapi.json``), its schemas generated from the msgspec types the API
reads and returns."""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from smps import __version__
from smps import config as cfg
from smps.proxy.screening_trial import TrialMessage, TrialResult
from smps.store.entities import KINDS
from smps.web.api.base import PREFIX, ErrorOut, json_response
from smps.web.api.configuration import CRUD_PATHS
from smps.web.api.decisions import DecisionPage, MinuteCount
from smps.web.api.traces import TraceOut, TracePage


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _query(name: str, description: str, schema: dict[str, Any] | None = None) -> dict:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema or {"type": "string"},
    }


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 description of this API, schemas generated from the msgspec types."""
    structs = (
        *(KINDS[name].struct for name in CRUD_PATHS),
        cfg.PolicyConfig,
        TrialMessage,
        TrialResult,
        DecisionPage,
        MinuteCount,
        TracePage,
        TraceOut,
        ErrorOut,
    )
    _, components = msgspec.json.schema_components(
        structs, ref_template="#/components/schemas/{name}"
    )
    errors = {
        str(code): {"description": text, **_content(_ref("ErrorOut"))}
        for code, text in (
            (401, "missing or invalid token"),
            (403, "the token's role may not do this"),
            (404, "not found"),
            (409, "file-managed, duplicate or still referenced"),
            (422, "invalid input; `field` names the key"),
        )
    }
    paths: dict[str, Any] = {}
    for name, path in CRUD_PATHS.items():
        schema = _ref(KINDS[name].struct.__name__)
        paths[f"{PREFIX}{path}"] = {
            "get": {"summary": f"list {name}", "responses": {"200": {"description": "ok"}}},
            "post": {
                "summary": f"create one of {name}",
                "requestBody": {"required": True, **_content(schema)},
                "responses": {"201": {"description": "created"}, **errors},
            },
        }
        item = {"summary": f"one of {name}", "responses": {"200": {"description": "ok"}, **errors}}
        paths[f"{PREFIX}{path}/{{key}}"] = {
            "parameters": [
                {"name": "key", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
            "get": item,
            "put": {
                **item,
                "summary": f"replace one of {name}",
                "requestBody": {"required": True, **_content(schema)},
            },
            "patch": {
                **item,
                "summary": f"change fields of one of {name}",
                "requestBody": {"required": True, **_content({"type": "object"})},
            },
            "delete": {
                "summary": f"delete one of {name}",
                "responses": {"204": {"description": "deleted"}, **errors},
            },
        }
    paths[f"{PREFIX}/policy"] = {
        "get": {"summary": "the verdict policy", "responses": {"200": {"description": "ok"}}},
        "put": {
            "summary": "replace the verdict policy",
            "requestBody": {"required": True, **_content(_ref("PolicyConfig"))},
            "responses": {"200": {"description": "ok"}, **errors},
        },
    }
    filters = [
        _query("src", "source address, exact"),
        _query("dst", "destination address, exact"),
        _query("verdict", "allow | block | tempfail"),
        _query("reason", "block | all_allow | timeout | no_ne | overload | sticky | receipt"),
        _query("account", "the NE account whose verdict decided"),
        _query("rule", "the screening rule that decided (rule_id)"),
        _query("fingerprint", "the message's content fingerprint, 16 lowercase hex digits"),
        _query("since", "ISO 8601 or epoch seconds, inclusive"),
        _query("until", "ISO 8601 or epoch seconds, exclusive"),
        _query("limit", "page size, 1..1000 (default 100)", {"type": "integer"}),
        _query("cursor", "next_cursor of the previous page"),
    ]
    paths[f"{PREFIX}/screening/test"] = {
        "post": {
            "summary": "try a message on the live screening rules, counted in no velocity "
            "window: every rule that fires and the verdict",
            "requestBody": {"required": True, **_content(_ref("TrialMessage"))},
            "responses": {
                "200": {"description": "ok", **_content(_ref("TrialResult"))},
                "503": {"description": "no screening on this node"},
                **errors,
            },
        }
    }
    paths[f"{PREFIX}/sessions"] = {
        "get": {
            "summary": "live binds per NE account and per SMSC",
            "responses": {"200": {"description": "ok"}, "503": {"description": "no node"}},
        }
    }
    paths[f"{PREFIX}/sessions/{{system_id}}/kick"] = {
        "post": {
            "summary": "unbind every bind of an NE account (it may bind again); audited",
            "parameters": [
                {"name": "system_id", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
            "responses": {"200": {"description": "how many were unbound"}, **errors},
        }
    }
    paths[f"{PREFIX}/reload"] = {
        "post": {
            "summary": "read the configuration file and its screening list files again and "
            "apply them live, as SIGHUP does; audited",
            "responses": {
                "200": {"description": "applied"},
                "409": {"description": "refused: the file or a list file is bad (why)"},
                "503": {"description": "no node"},
                **errors,
            },
        }
    }
    name_parameter = [
        {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
    ]
    paths[f"{PREFIX}/tokens"] = {
        "get": {"summary": "API tokens (admin)", "responses": {"200": {"description": "ok"}}}
    }
    paths[f"{PREFIX}/tokens/{{id}}/revoke"] = {
        "parameters": [
            {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}
        ],
        "post": {
            "summary": "revoke a token: its next request gets 401 (audited)",
            "responses": {"200": {"description": "revoked"}, **errors},
        },
    }
    paths[f"{PREFIX}/users"] = {
        "get": {"summary": "admin UI users (admin)", "responses": {"200": {"description": "ok"}}}
    }
    paths[f"{PREFIX}/users/{{name}}/password"] = {
        "parameters": name_parameter,
        "post": {
            "summary": "set a user's password (audited)",
            "requestBody": {
                "required": True,
                **_content({"type": "object", "properties": {"password": {"type": "string"}}}),
            },
            "responses": {"200": {"description": "set"}, **errors},
        },
    }
    for verb in ("disable", "enable"):
        paths[f"{PREFIX}/users/{{name}}/{verb}"] = {
            "parameters": name_parameter,
            "post": {
                "summary": f"{verb} a user's sign-in (audited)",
                "responses": {"200": {"description": "done"}, **errors},
            },
        }
    paths[f"{PREFIX}/decisions"] = {
        "get": {
            "summary": "decisions, newest first, keyset pagination",
            "parameters": filters,
            "responses": {"200": {"description": "ok", **_content(_ref("DecisionPage"))}, **errors},
        }
    }
    paths[f"{PREFIX}/decisions.csv"] = {
        "get": {
            "summary": "the same query as CSV, streamed (limit: rows in all, default all)",
            "parameters": filters,
            "responses": {"200": {"description": "CSV", "content": {"text/csv": {}}}, **errors},
        }
    }
    paths[f"{PREFIX}/decisions/{{id}}"] = {
        "get": {
            "summary": "one decision with its per-NE results",
            "parameters": [
                {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}
            ],
            "responses": {
                "200": {"description": "ok", **_content(_ref("StoredDecision"))},
                **errors,
            },
        }
    }
    paths[f"{PREFIX}/stats/minutes"] = {
        "get": {
            "summary": "per-minute counts per account and verdict (account '' = final verdict)",
            "parameters": [
                _query("since", "default: an hour before until"),
                _query("until", "default: now"),
                _query("account", "one account"),
            ],
            "responses": {
                "200": {
                    "description": "ok",
                    **_content({"type": "array", "items": _ref("MinuteCount")}),
                },
                **errors,
            },
        }
    }
    paths[f"{PREFIX}/audit"] = {
        "get": {
            "summary": "audit log, newest first (secrets masked)",
            "parameters": [_query("limit", "1..1000", {"type": "integer"}), _query("cursor", "")],
            "responses": {"200": {"description": "ok"}, **errors},
        }
    }
    paths[f"{PREFIX}/traces"] = {
        "get": {
            "summary": "traced messages, newest first by arrival, keyset pagination",
            "parameters": [
                _query("number", "source or destination, as in a trace rule (prefix: 8613*)"),
                _query("since", "arrival, ISO 8601 or epoch seconds, inclusive"),
                _query("until", "arrival, ISO 8601 or epoch seconds, exclusive"),
                _query("limit", "page size, 1..1000 (default 100)", {"type": "integer"}),
                _query("cursor", "next_cursor of the previous page"),
            ],
            "responses": {"200": {"description": "ok", **_content(_ref("TracePage"))}, **errors},
        }
    }
    paths[f"{PREFIX}/traces/stream"] = {
        "get": {
            "summary": "new trace events as Server-Sent Events (event: trace | dropped)",
            "parameters": [
                _query("number", "only events of this number or prefix"),
                _query("token", "the bearer token, for EventSource clients"),
            ],
            "responses": {
                "200": {"description": "event stream", "content": {"text/event-stream": {}}},
                "503": {"description": "no live traces on this node"},
                **errors,
            },
        }
    }
    paths[f"{PREFIX}/traces/{{message_id}}"] = {
        "get": {
            "summary": "the events of one traced message, in the order recorded",
            "parameters": [
                {"name": "message_id", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
            "responses": {"200": {"description": "ok", **_content(_ref("TraceOut"))}, **errors},
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "SMPS API", "version": __version__},
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
        "paths": paths,
    }


async def serve_openapi(request: web.Request) -> web.Response:
    return json_response(openapi_document())
