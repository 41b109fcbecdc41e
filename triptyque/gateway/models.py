"""The gateway's request and answer bodies as pydantic models: parsed with them, and
published from them in ``/openapi.json`` (``openapi.py``), so the contract has one source.
"""

from __future__ import annotations

import unicodedata
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# The limits of the admin decision's free text, enforced and published from here.
OPERATOR_MAX = 100
REASON_MAX = 500


def unprintable(text: str) -> str | None:
    """The first character of ``text`` that must not be stored or echoed (as U+XXXX), or None.

    Control characters (newline, ESC, NUL...), format characters (the bidi overrides such as
    U+202E, zero-width ones), line and paragraph separators, unassigned code points and
    surrogates: they forge log lines, hide text or drive terminals."""
    if text.isprintable():
        return None
    for char in text:
        if unicodedata.category(char) in _REFUSED:
            return f"U+{ord(char):04X}"
    return None


_REFUSED = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}


class Decision(BaseModel):
    """The body of ``POST /admin/kill`` and ``/admin/resume``."""

    model_config = ConfigDict(extra="ignore")

    operator: str | None = Field(default=None, max_length=OPERATOR_MAX,
                                 description="Optional free-text note (a person's name, a ticket). It is "
                                             "recorded as the entry's 'note': the operator recorded is "
                                             "always the name of the admin key that made the call.")
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
    audit_head: str | None = Field(default=None, description="Hash of the audit chain's last entry.")
    audit_seq: int | None = Field(default=None, description="Sequence number of that entry.")


class ApprovalPending(BaseModel):
    """The answer (202) to a resume held by the two-person rule: the approval is recorded, the
    service stays stopped until another admin credential approves before ``deadline``."""

    message: str
    approval: Literal["recorded"] = "recorded"
    approved_by: str = Field(description="The admin credential whose approval was recorded.")
    approvals_needed: int = Field(default=1, description="Approvals still needed, from other credentials.")
    deadline: float = Field(description="Unix time by which the other approval must come.")
    approval_window_seconds: float
    engaged: bool = True
    audit_seq: int | None = None


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
