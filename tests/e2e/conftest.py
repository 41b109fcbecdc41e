"""The real local target (vLLM on the CPU, the gateway, Prometheus) on ports of its own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import ROOT
from triptyque.spec import DEFAULT_SPEC, ServiceSpec, load_spec
from triptyque.targets.local import LocalPorts, LocalTarget


def spec_on_ports(gateway: int, engine: int) -> ServiceSpec:
    spec = load_spec(ROOT / DEFAULT_SPEC, target="local")
    return spec.model_copy(update={
        "gateway": spec.gateway.model_copy(update={"port": gateway}),
        "engine": spec.engine.model_copy(update={"port": engine}),
    })


@pytest.fixture(scope="package")
def local_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTarget]:
    target = LocalTarget(spec_on_ports(18180, 18181), tmp_path_factory.mktemp("state") / "local",
                         LocalPorts(prometheus=19190, alertmanager=19193, webhook=19194))
    try:
        target.up(lambda _message: None)
        yield target
    finally:
        target.down(lambda _message: None)
