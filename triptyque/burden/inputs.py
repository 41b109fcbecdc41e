"""Reading the files a user gives the comparison: strict YAML, one line per problem, hashes.

``read_strict(path, option)`` refuses a duplicate key (YAML itself keeps the last one
silently), names the line of a syntax error, and says which command-line option
points at the file when it is missing. ``fingerprint(path)`` is the path and SHA-256
the report carries for every input. ``number_hint`` explains the one YAML surprise
with numbers: ``4e8`` is text (YAML 1.1 wants ``4.0e+8``), so the hint says to write
``400_000_000``.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import yaml

from triptyque.burden.errors import BurdenError

_SCIENTIFIC = re.compile(r"^[+-]?(\d[\d_]*)?\.?\d*[eE][+-]?\d+$")


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key written twice in one mapping."""


def _mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _value in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if isinstance(key, list | dict):
            continue
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first on line {seen[key] + 1})", key_node.start_mark)
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def read_strict(path: Path, option: str) -> Any:
    """The parsed document; ``BurdenError`` with one line naming the file (and line) otherwise."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BurdenError([f"{path}: file not found (pass {option} PATH)"]) from None
    except IsADirectoryError:
        raise BurdenError([f"{path}: is a folder, not a file (pass {option} PATH)"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BurdenError([f"{path}: cannot read: {exc}"]) from None
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise BurdenError([f"{path}: {line}invalid YAML: {problem}"]) from None


def number_hint(value: Any) -> str | None:
    """For text YAML did not read as a number (``4e8``), how to write that number."""
    if not isinstance(value, str) or not _SCIENTIFIC.match(value.strip()):
        return None
    try:
        number = float(value.replace("_", ""))
    except ValueError:
        return None
    written = f"{int(number):_}" if number.is_integer() else repr(number)
    return f"YAML reads {value!r} as text, not a number: write {written}"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fingerprint(path: Path) -> dict[str, str]:
    """What the report records of one input file: its path and SHA-256 (or why not)."""
    try:
        return {"path": str(path), "sha256": sha256(path)}
    except OSError as exc:
        return {"path": str(path), "sha256": f"unreadable: {exc.strerror}"}
