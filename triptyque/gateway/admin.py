"""Admin: kill, resume and status behind the admin keys, and the readiness probe.

The decision's body is the ``Decision`` model (``models.py``), the same one
``/openapi.json`` publishes. The operator recorded is the name of the admin key that made
the call, never what the body says: the body's free-text ``operator`` is kept as the
entry's ``note``. Under the spec's two-person rule (``kill_switch.two_person_resume``) a
resume from one credential is recorded as an approval and answered 202; a kill never waits.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from triptyque.gateway.accounting import Accounting
from triptyque.gateway.admission import Slots, authenticate, read_json
from triptyque.gateway.errors import Refusal, refusal_response
from triptyque.gateway.killswitch import KillSwitch, Pending, PersistError
from triptyque.gateway.models import OPERATOR_MAX, REASON_MAX, ApprovalPending, Decision, unprintable
from triptyque.gateway.settings import GatewaySettings
from triptyque.gateway.state import KillState


class Admin:
    def __init__(self, settings: GatewaySettings, killswitch: KillSwitch, accounting: Accounting,
                 slots: Slots, engine: httpx.AsyncClient) -> None:
        self.settings, self.killswitch, self.accounting, self.slots = settings, killswitch, accounting, slots
        self.engine = engine

    async def handle(self, request: Request) -> Response:
        route = request.scope["path"]
        started = time.perf_counter()
        key = "-"
        try:
            key = authenticate(request, self.settings.admin_keys, "admin")
            if request.method == "GET":
                self.accounting.record(request, route, 200, key, started)
                return JSONResponse(self.status_body())
            if not self.settings.kill_switch.enabled:
                raise Refusal(403, "The kill switch is disabled in the service spec.", "kill_switch_disabled")
            _, body = await read_json(request, self.settings)
            decision = self.decision(body)
            action = route.rsplit("/", 1)[-1]
            policy = self.settings.kill_switch
            outcome: tuple[KillState, bool] | Pending
            try:
                if action == "kill":
                    outcome = await self.killswitch.engage(key, decision.reason, f"gateway:{key}",
                                                           note=decision.operator, in_flight=self.slots.in_flight)
                else:
                    outcome = await self.killswitch.release(
                        key, decision.reason, f"gateway:{key}", note=decision.operator,
                        two_person_window=float(policy.approval_window_seconds) if policy.two_person_resume
                        else None)
            except PersistError as exc:
                raise Refusal(500, str(exc), "state_not_persisted") from None
        except Refusal as refusal:
            self.accounting.record(request, route, refusal.status, key, started)
            return refusal_response(request, refusal)
        if isinstance(outcome, Pending):
            self.accounting.record(request, route, 202, key, started)
            return JSONResponse(self.pending_body(outcome), status_code=202)
        state, changed = outcome
        self.accounting.record(request, route, 200, key, started)
        return JSONResponse({**self.status_body(), "changed": changed, "operator": state.operator})

    @staticmethod
    def pending_body(pending: Pending) -> dict[str, Any]:
        deadline = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(pending.deadline))
        return ApprovalPending(
            message=(f"Approval recorded for admin key {pending.approver!r}; the service stays stopped. "
                     f"One more approval from another admin key is needed before {deadline} "
                     "(two-person rule)."),
            approved_by=pending.approver, deadline=pending.deadline,
            approval_window_seconds=pending.window, audit_seq=pending.seq,
        ).model_dump(mode="json")

    def decision(self, body: dict[str, Any]) -> Decision:
        if body.get("reason") is None:  # absent or null: the spec decides whether it is required
            body = {k: v for k, v in body.items() if k != "reason"}
        try:
            decision = Decision.model_validate(body)
        except ValidationError as exc:
            field = str(exc.errors()[0]["loc"][0]) if exc.errors()[0]["loc"] else ""
            if field == "reason":
                if isinstance(body.get("reason"), str) and len(body["reason"]) > REASON_MAX:
                    raise Refusal(400, f"Field 'reason' is longer than {REASON_MAX} characters.",
                                  "reason_too_long") from None
                raise Refusal(400, "Field 'reason' is required: why the service is stopped or resumed.",
                              "missing_reason") from None
            raise Refusal(400, f"Field 'operator' is an optional note of at most {OPERATOR_MAX} characters; "
                          "the operator recorded is the admin key's name.", "invalid_operator") from None
        operator, reason = (decision.operator or "").strip(), decision.reason.strip()
        for field, text in (("operator", operator), ("reason", reason)):
            bad = unprintable(text)
            if bad is not None:
                raise Refusal(400, f"Field '{field}' holds a control or direction character ({bad}); "
                              "send plain text on one line.", "invalid_text")
        if self.settings.kill_switch.require_reason and not reason:
            raise Refusal(400, "Field 'reason' is required: why the service is stopped or resumed.",
                          "missing_reason")
        return Decision(operator=operator or None, reason=reason)

    def status_body(self) -> dict[str, Any]:
        state = self.killswitch.state
        return {
            "engaged": state.engaged, "operator": state.operator, "reason": state.reason,
            "changed_at": state.changed_at, "fail_closed": self.killswitch.fail_closed_reason,
            "in_flight": self.slots.in_flight, "target": self.settings.target,
            # Where the audit chain stands: recorded with every kill and resume in the ledger, so
            # a later cut of the chain shows against it.
            "audit_head": state.audit_head, "audit_seq": state.audit_seq,
        }

    async def readyz(self, request: Request) -> Response:
        if self.killswitch.engaged:  # unauthenticated: who stopped it and why is for /admin/status
            return JSONResponse({"ready": False, "kill_switch_engaged": True,
                                 "reason": "stopped by the kill switch"}, status_code=503)
        try:
            probe = await self.engine.get("/health", timeout=2.0)
            engine_ok = probe.status_code == 200
        except httpx.HTTPError:
            engine_ok = False
        if not engine_ok:
            return JSONResponse({"ready": False, "kill_switch_engaged": False,
                                 "reason": "engine not ready"}, status_code=503)
        return JSONResponse({"ready": True, "kill_switch_engaged": False, "reason": ""})
