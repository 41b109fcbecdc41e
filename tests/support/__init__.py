"""What several test folders (and bench/) share: the repository root, the edge test
fleet, the fake API server, the browser check. Test modules import from here, never
from each other."""

from __future__ import annotations

from pathlib import Path

from triptyque.paths import project_root

ROOT = project_root(Path(__file__))
