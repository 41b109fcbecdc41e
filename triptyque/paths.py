"""Where the project's files are: the one place that finds the repository root."""

from __future__ import annotations

from pathlib import Path

from triptyque.errors import TargetError

# A checkout of triptyque (or a project laid out like one) holds these.
MARKERS = ("Pulumi.yaml", "serving")
PACKAGE_CHECKOUT = Path(__file__).resolve().parents[1]


def _is_root(folder: Path) -> bool:
    return all((folder / marker).exists() for marker in MARKERS)


def project_root(start: Path | None = None) -> Path:
    """The checkout holding ``Pulumi.yaml`` and ``serving/``: ``start`` (default: the current
    folder) or a folder above it, else the checkout this package was installed from."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if _is_root(folder):
            return folder
    if _is_root(PACKAGE_CHECKOUT):
        return PACKAGE_CHECKOUT
    raise TargetError(f"no Pulumi.yaml with a serving/ folder in {here} or above: run triptyque from its checkout")
