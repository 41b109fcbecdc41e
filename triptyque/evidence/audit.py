"""The kill-switch audit chain in a bundle: its lines, the stored state, and whether they hold.

The chain is checked without the audit key (that secret never goes in a bundle): the
hashes, the order and the sequence, and the state's agreement with the last entry. With
the key, ``triptyque audit verify --key`` checks the signatures as well.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from triptyque.errors import TriptyqueError
from triptyque.gateway import chain
from triptyque.gateway.incidents import incidents
from triptyque.gateway.settings import AUDIT_FILE, STATE_FILE
from triptyque.gateway.state import KillState, disagreement

LOG = f"audit/{AUDIT_FILE}"
STATE = f"audit/{STATE_FILE}"
RESULT = "audit/verification.json"
INCIDENTS = "audit/incidents.json"


def check(log: bytes | None, state: bytes | None) -> dict[str, Any]:
    """What the chain in ``log`` and the ``state`` beside it say; raises nothing."""
    if log is None:
        if state is None:
            return {"ok": None, "note": "no audit log: no kill-switch decision was taken in this state folder"}
        return {"ok": False, "error": "the state is here but its audit log is missing"}
    try:
        verified = chain.verify(log.decode("utf-8").splitlines(), lambda n: f"{LOG}:{n}", LOG)
        stored = KillState.model_validate_json(state) if state is not None else None
    except UnicodeDecodeError:
        return {"ok": False, "error": f"{LOG} is not UTF-8 text"}
    except ValidationError as exc:
        return {"ok": False, "error": f"{STATE} is not a kill-switch state ({exc.errors()[0]['msg']})"}
    except TriptyqueError as exc:
        return {"ok": False, "error": str(exc)}
    problem = disagreement(stored, verified)
    if problem is not None:
        return {"ok": False, "error": f"state and log disagree: {problem}"}
    return {"ok": True, "entries": verified.entries, "head": verified.head, "seq": verified.seq,
            "last_action": verified.action, "state": "agrees" if stored is not None else "no state",
            "recoveries": list(verified.recoveries), "signatures": "not checked (the audit key is not in bundles)"}


def incidents_of(log: bytes) -> list[dict[str, Any]] | None:
    """Every kill and the resume that ended it, from the chain's entries; None for an unreadable log."""
    try:
        entries = [json.loads(line) for line in log.decode("utf-8").splitlines() if line.strip()]
    except (UnicodeDecodeError, ValueError):
        return None
    return [incident.as_dict() for incident in incidents(entry for entry in entries if isinstance(entry, dict))]


def collect(platform: str, state_dir: Path) -> tuple[dict[str, bytes], dict[str, Any]]:
    """The audit files of the target's state folder, and their check."""
    if platform != "local":
        where = ("the cluster's kill-switch ConfigMap" if platform == "kubernetes" else "each node's state folder")
        return {}, {"ok": None, "note": f"the audit chain of this target is kept in {where}, not on this machine; "
                                        "`triptyque audit verify` checks a copy"}
    folder = state_dir / "local" / "state"
    files = {name: (folder / Path(name).name).read_bytes()
             for name in (LOG, STATE) if (folder / Path(name).name).is_file()}
    return files, check(files.get(LOG), files.get(STATE))
