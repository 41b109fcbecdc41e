"""A CycloneDX SBOM for one image, written with the CycloneDX project's own Python library.

It lists what the image holds: the Debian packages of its base (from dpkg's status), the
pinned Python distributions (with the SHA-256 of the wheel installed) and triptyque itself.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from cyclonedx.model import HashAlgorithm, HashType, Property
from cyclonedx.model.bom import Bom, BomMetaData
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.model.license import LicenseExpression
from cyclonedx.output.json import JsonV1Dot6
from packageurl import PackageURL
from packaging.utils import canonicalize_name

if TYPE_CHECKING:
    from triptyque.images.build import Built


def _wheel_hash(wheels: Path, name: str, version: str) -> list[HashType]:
    prefix = f"{canonicalize_name(name).replace('-', '_')}-{version}-"
    for wheel in wheels.glob("*.whl"):
        if wheel.name.lower().startswith(prefix.lower()):
            digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
            return [HashType(alg=HashAlgorithm.SHA_256, content=digest)]
    return []


def write_sbom(path: Path, built: Built, pins: list[tuple[str, str]], debs: list[tuple[str, str, str]],
               wheels: Path, application: str | None = "triptyque") -> Path:
    """``application``: the project's own package in the image (the gateway's), at the image's tag."""
    properties = [Property(name="org.opencontainers.image.revision", value=built.revision),
                  Property(name="io.triptyque.inputs", value=built.key)]
    if built.spec_hash:
        properties.insert(1, Property(name="io.triptyque.spec-hash", value=built.spec_hash))
    image = Component(
        name=built.repository, version=built.digest, type=ComponentType.CONTAINER,
        bom_ref=f"image:{built.component}", properties=properties,
    )
    bom = Bom(metadata=BomMetaData(component=image))
    if application is not None:
        bom.components.add(Component(
            name=application, version=built.tag, type=ComponentType.APPLICATION, bom_ref=f"pypi:{application}",
            licenses=[LicenseExpression("Apache-2.0")],
            purl=PackageURL(type="pypi", name=application, version=built.tag),
        ))
    for name, version in pins:
        bom.components.add(Component(
            name=name, version=version, type=ComponentType.LIBRARY, bom_ref=f"pypi:{canonicalize_name(name)}",
            purl=PackageURL(type="pypi", name=canonicalize_name(name), version=version),
            hashes=_wheel_hash(wheels, name, version),
        ))
    for package, version, arch in debs:
        bom.components.add(Component(
            name=package, version=version, type=ComponentType.LIBRARY, bom_ref=f"deb:{package}",
            purl=PackageURL(type="deb", namespace="debian", name=package, version=version,
                            qualifiers={"arch": arch, "distro": "debian-12"}),
        ))
    # The image holds every component; nothing here says which needs which.
    bom.register_dependency(image, list(bom.components))
    path.write_text(JsonV1Dot6(bom).output_as_string(indent=2) + "\n")
    return path
