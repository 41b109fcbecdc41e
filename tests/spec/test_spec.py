"""The service spec: one file, validated, with per-target overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.support import ROOT
from triptyque.errors import SpecError
from triptyque.spec import DEFAULT_SPEC, load_spec, validate_file

SPEC = ROOT / DEFAULT_SPEC


def write(tmp_path: Path, mutate) -> Path:  # type: ignore[no-untyped-def]
    data = yaml.safe_load(SPEC.read_text())
    mutate(data)
    path = tmp_path / "service.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_the_shipped_spec_is_valid_for_every_target() -> None:
    resolved = validate_file(SPEC)
    assert set(resolved) == {"base", "local", "edge", "onprem", "cloud"}
    assert resolved["local"].resources.gpu_count == 0
    assert resolved["local"].engine.load_format == "dummy"
    assert resolved["local"].model_path == (ROOT / "serving" / "tiny-model")


def test_target_overrides_merge_into_the_base_without_touching_other_fields() -> None:
    base, local = load_spec(SPEC), load_spec(SPEC, target="local")
    assert local.gateway.port != base.gateway.port
    assert local.gateway.limits == base.gateway.limits
    assert local.slo == base.slo
    assert local.target == "local" and base.target is None
    assert local.spec_hash() != base.spec_hash()


def test_each_problem_is_one_line_naming_the_file_and_the_field(tmp_path: Path) -> None:
    def break_it(data):  # type: ignore[no-untyped-def]
        data["gateway"]["port"] = 70000
        data["engine"]["dtype"] = "float8"
        data["slo"]["availability"] = 1.5
        data["model"]["colour"] = "blue"

    path = write(tmp_path, break_it)
    with pytest.raises(SpecError) as caught:
        validate_file(path)
    problems = caught.value.problems
    fields = ("gateway.port", "engine.dtype", "slo.availability", "model.colour")
    for field in fields:
        assert any(p.startswith(f"{path}: {field}") for p in problems), (field, problems)
    assert all("\n" not in p for p in problems)
    assert len({p.split(":")[1] for p in problems}) == len(fields)


@pytest.mark.parametrize(("mutate", "expected"), [
    (lambda d: d["targets"].update(mars={}), "targets.mars: unknown target"),
    (lambda d: d["targets"]["local"]["resources"].update(gpu_type="L4"),
     "resources (with targets.local applied): gpu_type must be 'none' when gpu_count is 0"),
    (lambda d: d["engine"].update(extra_args=["--port=9"]), "engine.extra_args: --port is set by triptyque"),
    (lambda d: d["gateway"].update(api_keys={"alice": {"sha256": "abc"}}),
     "gateway.api_keys.alice.sha256: must be 64 lowercase hex"),
    (lambda d: d["gateway"].update(api_keys={"Alice Smith": {"sha256": "a" * 64}}),
     "gateway.api_keys.Alice Smith.[key]"),
    (lambda d: d["targets"]["local"]["gateway"].update(port=18081), "engine.port and gateway.port must differ"),
])
def test_invalid_values_are_explained(tmp_path: Path, mutate, expected: str) -> None:  # type: ignore[no-untyped-def]
    path = write(tmp_path, mutate)
    with pytest.raises(SpecError) as caught:
        validate_file(path)
    assert any(expected in p for p in caught.value.problems), caught.value.problems


def test_broken_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "service.yaml"
    path.write_text("name: x\nmodel: [unclosed\nengine: {}\n")
    with pytest.raises(SpecError, match=r"service.yaml: line \d+: invalid YAML"):
        load_spec(path)


def test_a_missing_or_non_mapping_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="file not found"):
        load_spec(tmp_path / "nope.yaml")
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(SpecError, match="must be a YAML mapping"):
        load_spec(path)


def test_a_hub_model_keeps_its_revision_and_gpu_flags_appear_only_with_a_gpu(tmp_path: Path) -> None:
    from triptyque.engine import engine_args

    # The cloud overlay names its own model: the hub model goes there.
    path = write(tmp_path, lambda d: d["targets"]["cloud"]["model"].update(source="org/model-7b",
                                                                           revision="abc123"))
    cloud, local = load_spec(path, target="cloud"), load_spec(SPEC, target="local")
    cloud_args, local_args = engine_args(cloud), engine_args(local)
    assert "--enforce-eager" in local_args and "--enforce-eager" not in cloud_args
    assert cloud_args[cloud_args.index("--model") + 1] == "org/model-7b"
    assert cloud_args[cloud_args.index("--revision") + 1] == "abc123"
    assert "--gpu-memory-utilization" in cloud_args
    assert "--gpu-memory-utilization" not in local_args and "--revision" not in local_args
    assert local_args[local_args.index("--load-format") + 1] == "dummy"
