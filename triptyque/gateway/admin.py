"""Admin: kill, resume and status behind the admin keys, and the readiness probe.

The decision's body is the ``Decision`` model (``models.py``), the same one
``/openapi.json`` publishes.
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
from triptyque.gateway.killswitch import KillSwitch, PersistError
from triptyque.gateway.models import REASON_MAX, Decision
from triptyque.gateway.settings import GatewaySettings


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
            change = self.killswitch.engage if action == "kill" else self.killswitch.release
            try:
                state, changed = await change(decision.operator, decision.reason, f"gateway:{key}")
            except PersistError as exc:
                raise Refusal(500, str(exc), "state_not_persisted") from None
        except Refusal as refusal:
            self.accounting.record(request, route, refusal.status, key, started)
            return refusal_response(request, refusal)
        self.accounting.record(request, route, 200, key, started)
        return JSONResponse({**self.status_body(), "changed": changed, "operator": state.operator})

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
            raise Refusal(400, "Field 'operator' is required: who takes this decision (1-100 chars).",
                          "missing_operator") from None
        operator, reason = decision.operator.strip(), decision.reason.strip()
        if not operator:
            raise Refusal(400, "Field 'operator' is required: who takes this decision (1-100 chars).",
                          "missing_operator")
        if self.settings.kill_switch.require_reason and not reason:
            raise Refusal(400, "Field 'reason' is required: why the service is stopped or resumed.",
                          "missing_reason")
        return Decision(operator=operator, reason=reason)

    def status_body(self) -> dict[str, Any]:
        state = self.killswitch.state
        return {
            "engaged": state.engaged, "operator": state.operator, "reason": state.reason,
            "changed_at": state.changed_at, "fail_closed": self.killswitch.fail_closed_reason,
            "in_flight": self.slots.in_flight, "target": self.settings.target,
        }

    async def readyz(self, request: Request) -> Response:
        if self.killswitch.engaged:
            return JSONResponse({"ready": False, "kill_switch_engaged": True,
                                 "reason": self.killswitch.stopped_message()}, status_code=503)
        try:
            probe = await self.engine.get("/health", timeout=2.0)
            engine_ok = probe.status_code == 200
        except httpx.HTTPError:
            engine_ok = False
        if not engine_ok:
            return JSONResponse({"ready": False, "kill_switch_engaged": False,
                                 "reason": "engine not ready"}, status_code=503)
        return JSONResponse({"ready": True, "kill_switch_engaged": False, "reason": ""})
