"""The bundle on disk: files, the manifest that lists them, the signature, the tar archive.

A bundle is a folder of files named by relative paths. ``MANIFEST.json`` lists every
other file (except ``SIGNATURE.json``) with its SHA-256 and size, sorted by path, and the
facts of the build; ``SIGNATURE.json`` signs the manifest's exact bytes. The archive
holds the same files under one folder, in path order, with fixed metadata (mtime 0,
owner 0, modes 644/755), so equal files give an equal archive.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from triptyque.evidence.errors import EvidenceError

FORMAT = 1
MANIFEST = "MANIFEST.json"
SIGNATURE = "SIGNATURE.json"
RESERVED = frozenset({MANIFEST, SIGNATURE})


def to_json(data: Any) -> bytes:
    """Canonical enough to diff and to hash: sorted keys, two-space indent, newline at the end."""
    return (json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def safe_name(name: str) -> str:
    """A relative POSIX path with no ``..``, or EvidenceError."""
    path = PurePosixPath(name)
    if not name or path.is_absolute() or ".." in path.parts or "\\" in name or str(path) != name:
        raise EvidenceError(f"extra file: {name!r} is not a plain relative path")
    return name


def manifest(files: Mapping[str, bytes], facts: Mapping[str, Any]) -> bytes:
    listed = [{"path": name, "sha256": sha256(data), "bytes": len(data)} for name, data in sorted(files.items())]
    return to_json({"format": FORMAT, **facts, "files": listed})


def write_folder(folder: Path, files: Mapping[str, bytes]) -> None:
    """Write the bundle's files into a new (or emptied) folder."""
    if folder.exists():
        if not folder.is_dir():
            raise EvidenceError(f"{folder} exists and is not a folder")
        stale = [p for p in folder.rglob("*") if p.is_file() or p.is_symlink()]
        if stale and not (folder / MANIFEST).exists():
            raise EvidenceError(f"{folder} holds files but no {MANIFEST}: not replacing a folder that is not a bundle")
        for path in stale:
            path.unlink()
        for path in sorted((p for p in folder.rglob("*") if p.is_dir()), reverse=True):
            path.rmdir()
    for name, data in sorted(files.items()):
        path = folder / safe_name(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def _info(name: str, size: int, directory: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
    info.mode = 0o755 if directory else 0o644
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.size = 0 if directory else size
    return info


def write_tar(path: Path, top: str, files: Mapping[str, bytes]) -> None:
    """A deterministic archive: members under ``top/`` in path order, fixed metadata."""
    folders = sorted({str(parent) for name in files for parent in PurePosixPath(name).parents
                      if str(parent) != "."})
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(_info(top, 0, directory=True))
        entries = [(name, True) for name in folders] + [(name, False) for name in files]
        for name, directory in sorted(entries):
            data = b"" if directory else files[name]
            tar.addfile(_info(f"{top}/{name}", len(data), directory), None if directory else io.BytesIO(data))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())


def read_folder(folder: Path) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for path in sorted(folder.rglob("*")):
        name = path.relative_to(folder).as_posix()
        if path.is_symlink():
            raise EvidenceError(f"extra file: {name} is a symbolic link")
        if path.is_file():
            files[name] = path.read_bytes()
    return files


def read_tar(path: Path) -> dict[str, bytes]:
    """The archive's files by their path below its one top folder; nothing is extracted."""
    files: dict[str, bytes] = {}
    try:
        with tarfile.open(path, mode="r:*") as tar:
            tops = set()
            for member in tar.getmembers():
                top, _, rest = member.name.partition("/")
                tops.add(top)
                if member.isdir():
                    continue
                if not member.isfile():
                    raise EvidenceError(f"extra file: {member.name} is not a regular file")
                if not rest:
                    raise EvidenceError(f"extra file: {member.name} is outside the bundle's folder")
                extracted = tar.extractfile(member)
                if extracted is None:
                    raise EvidenceError(f"extra file: {member.name} cannot be read")
                files[safe_name(rest)] = extracted.read()
            if len(tops) > 1:
                raise EvidenceError(f"extra file: the archive has more than one top folder ({', '.join(sorted(tops))})")
    except (tarfile.TarError, EOFError) as exc:
        raise EvidenceError(f"{path.name}: not a readable tar archive ({exc})") from None
    return files


def read_bundle(path: Path) -> dict[str, bytes]:
    if path.is_dir():
        return read_folder(path)
    if path.is_file():
        return read_tar(path)
    raise EvidenceError(f"no bundle at {path}: give the bundle's folder or its .tar archive")
