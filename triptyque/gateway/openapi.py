"""The gateway's OpenAPI description, served at /openapi.json (and used by fuzzing)."""

from __future__ import annotations

from typing import Any

_ERROR = {"$ref": "#/components/schemas/Error"}
_JSON_ERROR = {"application/json": {"schema": _ERROR}}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(code): {"description": "JSON error", "content": _JSON_ERROR} for code in codes}


def _proxied(summary: str, body: str | None) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "security": [{"apiKey": []}],
        "responses": {
            "200": {"description": "The engine's answer, or a server-sent event stream",
                    "content": {"application/json": {"schema": {"type": "object"}},
                                "text/event-stream": {"schema": {"type": "string"}}}},
            **_errors(400, 401, 404, 408, 413, 415, 429, 502, 503, 504),
        },
    }
    if body:
        operation["requestBody"] = {"required": True, "content": {
            "application/json": {"schema": {"$ref": f"#/components/schemas/{body}"}}}}
    return operation


def _admin(summary: str) -> dict[str, Any]:
    return {
        "summary": summary,
        "security": [{"adminKey": []}],
        "requestBody": {"required": True, "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Decision"}}}},
        "responses": {"200": {"description": "Kill-switch state", "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/KillState"}}}},
            **_errors(400, 401, 403, 408, 413, 415, 500)},
    }


OPENAPI: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "triptyque gateway", "version": "1",
             "description": "OpenAI-compatible proxy in front of vLLM with API keys and a kill switch."},
    "paths": {
        "/v1/models": {"get": _proxied("List served models", None)},
        "/v1/completions": {"post": _proxied("Text completion", "Completion")},
        "/v1/chat/completions": {"post": _proxied("Chat completion", "ChatCompletion")},
        "/v1/embeddings": {"post": _proxied("Embeddings", "Embedding")},
        "/admin/kill": {"post": _admin("Engage the kill switch: stop serving at once")},
        "/admin/resume": {"post": _admin("Release the kill switch")},
        "/admin/status": {"get": {"summary": "Kill-switch state", "security": [{"adminKey": []}],
                                  "responses": {"200": {"description": "State", "content": {
                                      "application/json": {"schema": {"$ref": "#/components/schemas/KillState"}}}},
                                      **_errors(401)}}},
        "/healthz": {"get": {"summary": "Process alive", "responses": {"200": {"description": "alive"}}}},
        "/readyz": {"get": {"summary": "Engine reachable and not killed",
                            "responses": {"200": {"description": "ready"}, "503": {"description": "not ready"}}}},
        "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "text"}}}},
    },
    "components": {
        "securitySchemes": {
            "apiKey": {"type": "http", "scheme": "bearer"},
            "adminKey": {"type": "http", "scheme": "bearer"},
        },
        "schemas": {
            "Error": {"type": "object", "required": ["error"], "properties": {"error": {
                "type": "object", "required": ["message", "type", "code"],
                "properties": {"message": {"type": "string"}, "type": {"type": "string"},
                               "code": {"type": "string"}, "param": {"nullable": True}}}}},
            "Completion": {"type": "object", "required": ["model", "prompt"], "properties": {
                "model": {"type": "string"}, "prompt": {"type": "string"},
                "max_tokens": {"type": "integer", "minimum": 1, "maximum": 64},
                "stream": {"type": "boolean"}, "temperature": {"type": "number", "minimum": 0, "maximum": 2}}},
            "ChatCompletion": {"type": "object", "required": ["model", "messages"], "properties": {
                "model": {"type": "string"},
                "messages": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "required": ["role", "content"], "properties": {
                        "role": {"type": "string", "enum": ["system", "user", "assistant"]},
                        "content": {"type": "string"}}}},
                "max_tokens": {"type": "integer", "minimum": 1, "maximum": 64},
                "stream": {"type": "boolean"}}},
            "Embedding": {"type": "object", "required": ["model", "input"], "properties": {
                "model": {"type": "string"}, "input": {"type": "string"}}},
            "Decision": {"type": "object", "required": ["operator", "reason"], "properties": {
                "operator": {"type": "string", "minLength": 1, "maxLength": 100},
                "reason": {"type": "string", "minLength": 1, "maxLength": 500}}},
            "KillState": {"type": "object", "properties": {
                "engaged": {"type": "boolean"}, "operator": {"type": "string", "nullable": True},
                "reason": {"type": "string", "nullable": True}}},
        },
    },
}
