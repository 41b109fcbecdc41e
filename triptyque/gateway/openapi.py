"""The gateway's OpenAPI description, served at /openapi.json, generated from ``models.py``."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from triptyque.gateway.models import (
    ApprovalPending,
    ChatCompletion,
    Completion,
    Decision,
    Embedding,
    Error,
    KillStatus,
)


def _schemas() -> dict[str, Any]:
    models: list[type[BaseModel]] = [Completion, ChatCompletion, Embedding, Decision, KillStatus, ApprovalPending,
                                    Error]
    _, document = models_json_schema([(m, "validation") for m in models],
                                     ref_template="#/components/schemas/{model}")
    schemas: dict[str, Any] = document["$defs"]
    return schemas


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(code): {"description": "JSON error", "content": {"application/json": {"schema": _ref("Error")}}}
            for code in codes}


def _proxied(summary: str, body: str | None) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "security": [{"apiKey": []}],
        "responses": {
            "200": {"description": "The engine's answer, or a server-sent event stream",
                    "content": {"application/json": {"schema": {"type": "object"}},
                                "text/event-stream": {"schema": {"type": "string"}}}},
            **_errors(400, 401, 404, 408, 413, 415, 429, 500, 502, 503, 504),
        },
    }
    if body:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(body)}}}
    return operation


def _admin(summary: str, pending: bool = False) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": {"description": "Kill-switch state",
                                         "content": {"application/json": {"schema": _ref("KillStatus")}}}}
    if pending:
        responses["202"] = {"description": "Two-person rule: approval recorded, still stopped until another "
                                           "admin credential approves within the window",
                            "content": {"application/json": {"schema": _ref("ApprovalPending")}}}
    return {
        "summary": summary,
        "security": [{"adminKey": []}],
        "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("Decision")}}},
        "responses": {**responses, **_errors(400, 401, 403, 408, 413, 415, 500)},
    }


def openapi() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "triptyque gateway", "version": "1",
                 "description": "OpenAI-compatible proxy in front of vLLM with API keys and a kill switch."},
        "paths": {
            "/v1/models": {"get": _proxied("List served models", None)},
            "/v1/completions": {"post": _proxied("Text completion", "Completion")},
            "/v1/chat/completions": {"post": _proxied("Chat completion", "ChatCompletion")},
            "/v1/embeddings": {"post": _proxied("Embeddings", "Embedding")},
            "/admin/kill": {"post": _admin("Engage the kill switch: stop serving at once")},
            "/admin/resume": {"post": _admin("Release the kill switch (two admin credentials under the two-person "
                                              "rule)", pending=True)},
            "/admin/status": {"get": {
                "summary": "Kill-switch state", "security": [{"adminKey": []}],
                "responses": {"200": {"description": "State", "content": {
                    "application/json": {"schema": _ref("KillStatus")}}}, **_errors(401)}}},
            "/healthz": {"get": {"summary": "Process alive", "responses": {"200": {"description": "alive"}}}},
            "/readyz": {"get": {"summary": "Engine reachable and not killed",
                                "responses": {"200": {"description": "ready"},
                                              "503": {"description": "not ready"}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "text"}}}},
        },
        "components": {
            "securitySchemes": {
                "apiKey": {"type": "http", "scheme": "bearer"},
                "adminKey": {"type": "http", "scheme": "bearer"},
            },
            "schemas": _schemas(),
        },
    }


OPENAPI: dict[str, Any] = openapi()
