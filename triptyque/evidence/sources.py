"""What a bundle records about the code and its inputs: spec, git revision, lock file,
the Python environment's SBOM, image digests and SBOMs, ledger rows, the benchmark table.

Every function returns bytes or plain data that depend only on their inputs (no clock,
no absolute path of this machine), so two builds of one revision give the same files.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import re
import sqlite3
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from triptyque.burden.ledger import LEDGER_FILE
from triptyque.evidence.layout import sha256, to_json


@dataclass(frozen=True)
class Revision:
    commit: str  # "unknown" outside git
    clean: bool
    changed: tuple[str, ...]  # tracked files that differ, and untracked ones (relative paths)
    committed_at: str  # ISO 8601 time of the commit, used as the SBOM's time

    def as_dict(self) -> dict[str, Any]:
        return {"commit": self.commit, "clean": self.clean, "changed": list(self.changed),
                "committed_at": self.committed_at}


UNKNOWN_TIME = "1970-01-01T00:00:00+00:00"


def _git(root: Path, *argv: str) -> str | None:
    try:
        result = subprocess.run(["git", "-C", str(root), *argv], capture_output=True, text=True, timeout=30,
                                check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout if result.returncode == 0 else None


def revision(root: Path) -> Revision:
    """HEAD of the checkout at ``root``, and whether its tree matches it (untracked files count)."""
    head = _git(root, "rev-parse", "HEAD")
    status = _git(root, "status", "--porcelain", "--untracked-files=all")
    if head is None or status is None:
        return Revision("unknown", False, (), UNKNOWN_TIME)
    changed = tuple(sorted(line[3:] for line in status.splitlines() if line.strip()))
    committed = (_git(root, "log", "-1", "--format=%cI") or "").strip() or UNKNOWN_TIME
    return Revision(head.strip(), not changed, changed, committed)


def scrubber(*folders: Path) -> Any:
    """A function that writes paths of this machine relatively: each folder becomes ``.``."""
    names = {str(f) for f in folders} | {str(f.resolve()) for f in folders}
    pairs = sorted(((name, ".") for name in names if len(name) > 1), key=lambda item: -len(item[0]))
    home = str(Path.home())

    def scrub(value: Any) -> Any:
        if isinstance(value, str):
            for old, new in pairs:
                value = value.replace(old, new)
            return value.replace(home, "~") if len(home) > 1 else value
        if isinstance(value, dict):
            return {scrub(k): scrub(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [scrub(v) for v in value]
        return value

    return scrub


def spec_record(target: str, spec_file: Path, spec_hash: str, resolved: dict[str, Any]) -> bytes:
    return to_json({"target": target, "spec_hash": spec_hash, "file": spec_file.name,
                    "file_sha256": sha256(spec_file.read_bytes()), "resolved": resolved})


# ---- the Python environment -------------------------------------------------------------

def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def distributions() -> list[tuple[str, str]]:
    """(canonical name, version) of every distribution installed here, sorted, one per name."""
    found: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found.setdefault(_canonical(name), dist.version)
    return sorted(found.items())


def python_sbom(committed_at: str) -> tuple[bytes | None, str]:
    """A CycloneDX 1.6 SBOM of this Python environment (cyclonedx-python-lib), and what it is.

    Its serial number is derived from its contents and its time is the commit's, so the
    same environment at the same revision gives the same document.
    """
    try:
        from cyclonedx.model.bom import Bom, BomMetaData
        from cyclonedx.model.component import Component, ComponentType
        from cyclonedx.output.json import JsonV1Dot6
        from packageurl import PackageURL
    except ImportError:
        return None, "cyclonedx-python-lib is not installed here (pip install -e '.[k8s]'): no SBOM"
    found = distributions()
    own = dict(found).get("triptyque", "0")
    application = Component(name="triptyque", version=own, type=ComponentType.APPLICATION,
                            bom_ref="pypi:triptyque")
    bom = Bom(serial_number=uuid.uuid5(uuid.NAMESPACE_URL, "triptyque-evidence:" + json.dumps(found)),
              metadata=BomMetaData(component=application,
                                   timestamp=datetime.datetime.fromisoformat(committed_at)))
    for name, version in found:
        if name == "triptyque":
            continue
        bom.components.add(Component(name=name, version=version, type=ComponentType.LIBRARY,
                                     bom_ref=f"pypi:{name}",
                                     purl=PackageURL(type="pypi", name=name, version=version)))
    bom.register_dependency(application, list(bom.components))
    text = JsonV1Dot6(bom).output_as_string(indent=2)
    library = importlib.metadata.version("cyclonedx-python-lib")
    return (text + "\n").encode(), f"{len(found)} distributions, cyclonedx-python-lib {library}"


# ---- images ------------------------------------------------------------------------------

_KEPT = ("component", "repository", "tag", "digest", "key", "revision", "spec_hash")


def _digest(reference: str) -> str | None:
    return reference.split("@", 1)[1] if "@" in reference else None


def images(references: dict[str, str] | None, cache: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    """What ``triptyque image build`` recorded for the spec's images: digests, and the SBOM of
    each image built here (``<cache>/images/<component>-<key>/``)."""
    if not references:
        return {"note": "no images built: the spec pins none"}, {}
    built: dict[str, tuple[dict[str, Any], Path]] = {}
    for record in sorted((cache / "images").glob("*/built.json")):
        try:
            data = json.loads(record.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and isinstance(data.get("digest"), str):
            built.setdefault(data["digest"], (data, record.parent / "sbom.cdx.json"))
    summary: dict[str, Any] = {}
    files: dict[str, bytes] = {}
    for field, reference in sorted(references.items()):
        digest = _digest(reference)
        entry: dict[str, Any] = {"reference": reference, "digest": digest}
        placeholder = digest is not None and set(digest.removeprefix("sha256:")) == {"0"}
        if digest in built:
            data, sbom = built[digest]
            entry["built_here"] = {k: data.get(k) for k in _KEPT}
            if sbom.is_file():
                files[f"images/{field}.cdx.json"] = sbom.read_bytes()
                entry["sbom"] = f"images/{field}.cdx.json"
            else:
                entry["sbom"] = None
                entry["note"] = "built here, but its SBOM is missing from the image cache"
        else:
            entry["built_here"] = None
            entry["sbom"] = None
            entry["note"] = ("the zero placeholder: no image pinned yet" if placeholder else
                             "no image built here has this digest (an upstream image, or built elsewhere)")
        summary[field] = entry
    if not any(e["built_here"] for e in summary.values()):
        summary["note"] = "no images built here (`triptyque image build` records them)"
    return summary, files


# ---- ledger --------------------------------------------------------------------------------

def _decoded(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def ledger_rows(path: Path, target: str, commit: str) -> dict[str, Any]:
    """The ledger's rows for this target and revision (dirty or not), read-only."""
    if not path.is_file():
        return {"ledger": path.name, "note": "no ledger here", "rows": [], "other_revisions": 0}
    try:
        connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=10)
    except sqlite3.Error as exc:
        return {"ledger": path.name, "error": f"cannot open: {exc}", "rows": [], "other_revisions": 0}
    try:
        connection.row_factory = sqlite3.Row
        rows = [{k: _decoded(row[k]) for k in row.keys()}  # noqa: SIM118  # a Row iterates values
                for row in connection.execute("SELECT * FROM entries WHERE target = ? ORDER BY id", (target,))]
    except sqlite3.Error as exc:
        return {"ledger": path.name, "error": f"cannot read: {exc}", "rows": [], "other_revisions": 0}
    finally:
        connection.close()

    def same(row: dict[str, Any]) -> bool:
        return str(row.get("git_revision", "")).removesuffix("+dirty") == commit

    kept = [row for row in rows if same(row)]
    return {"ledger": path.name, "target": target, "revision": commit, "rows": kept,
            "other_revisions": len(rows) - len(kept)}


def ledger_path(state_dir: Path) -> Path:
    configured = os.environ.get("TRIPTYQUE_LEDGER")
    return Path(configured) if configured else state_dir / LEDGER_FILE
