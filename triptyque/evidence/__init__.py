"""Evidence for auditors: one signed, verifiable bundle per deployment.

``keygen`` creates the Ed25519 signing key (mode 600, never printed), ``build_bundle``
gathers what produced a deployment (spec, revision, lock file, SBOMs, image digests,
rendered artefacts, check results, audit chain, ledger rows, benchmark table), lists
every file with its SHA-256 in a signed manifest and packs it deterministically;
``verify_bundle`` names the first thing that no longer matches.
"""

from __future__ import annotations

from triptyque.evidence.build import Bundle, build_bundle
from triptyque.evidence.errors import EvidenceError
from triptyque.evidence.signing import KeyPair, generate
from triptyque.evidence.verify import Checked, verify_bundle

__all__ = ["Bundle", "Checked", "EvidenceError", "KeyPair", "build_bundle", "generate", "verify_bundle"]
