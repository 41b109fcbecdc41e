"""Entry point Pulumi runs (Pulumi.yaml: main: stacks/): read config once, build, export."""

import sys
from pathlib import Path

import pulumi

# Pulumi runs this file as a script; make the checkout importable as `stacks`.
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stacks.program import build, read_config  # noqa: E402

for name, value in build(read_config(), ROOT).items():
    pulumi.export(name, value)
