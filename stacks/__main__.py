"""Entry point Pulumi runs (Pulumi.yaml: main: stacks/): read config once, build, export."""

import sys
from pathlib import Path

import pulumi

from triptyque.paths import project_root

# Pulumi runs this file as a script; make the checkout importable as `stacks`.
ROOT = project_root(Path(__file__).parent)
sys.path.insert(0, str(ROOT))

from stacks.program import build, read_config  # noqa: E402

for name, value in build(read_config(), ROOT).items():
    pulumi.export(name, value)
