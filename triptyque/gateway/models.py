"""The gateway's request and answer bodies as pydantic models: parsed with them, and
published from them in ``/openapi.json`` (``openapi.py``), so the contract has one source.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# The limits of the admin decision's free text, enforced and published from here.
OPERATOR_MAX = 100
REASON_MAX = 500


class Decision(BaseModel):
    """The body of ``POST /admin/kill`` and ``/admin/resume``."""

    model_config = ConfigDict(extra="ignore")

    operator: str = Field(min_length=1, max_length=OPERATOR_MAX,
                          description="Who takes this decision.")
    reason: str = Field(default="", max_length=REASON_MAX,
                        description="Why the service is stopped or resumed (required unless the "
                                    "spec's kill_switch.require_reason is false).")


class KillStatus(BaseModel):
    """The kill switch's state as the admin routes answer it."""

    engaged: bool
    operator: str | None = None
    reason: str | None = None
    changed_at: float | None = None
    fail_closed: str | None = None
    in_flight: int = 0
    target: str = ""
    changed: bool | None = Field(default=None, description="Only in answers to kill and resume.")


class ErrorDetail(BaseModel):
    message: str
    type: str
    code: str
    param: None = None


class Error(BaseModel):
    error: ErrorDetail


class _OpenAI(BaseModel):
    # The engine takes many more fields; the gateway passes them on unchanged.
    model_config = ConfigDict(extra="allow")

    model: str
    stream: bool | None = None


class Completion(_OpenAI):
    prompt: str
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)


class Message(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class ChatCompletion(_OpenAI):
    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)


class Embedding(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str
    input: str
