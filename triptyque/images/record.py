"""Write image references into the spec's ``images:`` block, where ``render`` reads them.

A line edit, not a YAML round trip: the spec's comments and layout stay as they are.
"""

from __future__ import annotations

import re
from pathlib import Path

from triptyque.images.tools import ImageError

_BLOCK = re.compile(r"^images:[ \t]*(#.*)?$", re.MULTILINE)


def record_images(spec_path: Path, references: dict[str, str]) -> list[str]:
    """Set ``images.<field>`` for each field given; the fields changed."""
    lines = spec_path.read_text(encoding="utf-8").splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if _BLOCK.match(line.rstrip("\n"))), None)
    if start is None:
        raise ImageError(f"{spec_path}: no top-level images: block to record the digests in")
    changed: list[str] = []
    pending = dict(references)
    last, indent = start, "  "
    for index in range(start + 1, len(lines)):
        line = lines[index]
        if line.strip() and not line[0].isspace() and not line.lstrip().startswith("#"):
            break  # the next top-level key
        match = re.match(r"^(\s+)(engine_cpu|engine|gateway):(\s*)(\S+)(.*)$", line.rstrip("\n"))
        if match:
            last, indent = index, match.group(1)
        if match and match.group(2) in pending:
            field = match.group(2)
            value = pending.pop(field)
            if match.group(4) != value:
                changed.append(field)
            lines[index] = f"{match.group(1)}{field}: {value}{match.group(5)}\n"
    if "engine" in pending or "gateway" in pending:
        raise ImageError(f"{spec_path}: images: has no {', '.join(sorted(pending))} line to record the digest in")
    # An optional field (engine_cpu) the spec does not have yet: added after the block's last one.
    for offset, (field, value) in enumerate(sorted(pending.items()), start=1):
        lines.insert(last + offset, f"{indent}{field}: {value}\n")
        changed.append(field)
    spec_path.write_text("".join(lines), encoding="utf-8")
    return changed
