"""The policy pack Pulumi starts (`--policy-pack stacks/policies`): every rule, mandatory."""

import sys
from pathlib import Path

from pulumi_policy import EnforcementLevel, PolicyPack

# Pulumi runs this file as a script from the pack's folder; make the checkout importable.
from triptyque.paths import project_root

sys.path.insert(0, str(project_root(Path(__file__).parent)))

from stacks.policies.rules import policies

PolicyPack(name="triptyque", enforcement_level=EnforcementLevel.MANDATORY, policies=policies())
