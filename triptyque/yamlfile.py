"""Read a YAML file a user wrote; every failure is one line naming the file (and the line)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def read_yaml(path: Path, error: type[Exception], option: str) -> Any:
    """The parsed document; ``error([line])`` when the file is missing, unreadable or not YAML.

    ``option`` names the command-line option that points at the file, for the hint.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error([f"{path}: file not found (pass {option} PATH)"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error([f"{path}: cannot read: {exc}"]) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise error([f"{path}: {line}invalid YAML: {problem}"]) from None
