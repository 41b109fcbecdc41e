"""The service spec: one YAML file, one typed model, every target renders from it.

``load_spec(path, target)`` reads the file, deep-merges ``targets.<target>`` over the
base, and validates the result. Every problem becomes one line naming the file and
the field, so a user can fix them all in one pass.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from triptyque.errors import SpecError
from triptyque.kinds import OVERLAYS, SpecOverlay, TargetName, kind_of
from triptyque.yamlfile import read_yaml

DEFAULT_SPEC = Path("serving/service.yaml")

KeyName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.-]{0,62}$")]
Quantity = Annotated[str, StringConstraints(pattern=r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti)?$")]
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# What a model folder holds when it has real weights (a config alone is weightless).
WEIGHT_FILES = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.gguf")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Model(_Strict):
    name: Annotated[str, StringConstraints(min_length=1)]
    source: Annotated[str, StringConstraints(min_length=1)] = Field(
        description="A folder (relative to the spec file) or a Hugging Face hub id."
    )
    revision: Annotated[str, StringConstraints(min_length=1)]
    served_name: KeyName


class Engine(_Strict):
    version: Annotated[str, StringConstraints(pattern=r"^\d+\.\d+\.\d+$")]
    port: int = Field(ge=1, le=65535)
    max_model_len: int = Field(ge=16)
    dtype: Literal["auto", "float32", "float16", "bfloat16"]
    gpu_memory_utilization: float = Field(gt=0.0, le=1.0)
    tensor_parallel_size: int = Field(ge=1, le=64)
    load_format: Literal["auto", "safetensors", "dummy"] = "auto"
    # How long one start may take (weights downloaded and loaded, kernels compiled) before a
    # target calls it failed: the edge health gate, the Kubernetes startup probe and rollout.
    startup_seconds: int = Field(default=600, ge=30, le=7200)
    extra_args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)

    @field_validator("extra_args")
    @classmethod
    def _no_managed_flags(cls, value: list[str]) -> list[str]:
        managed = {"--port", "--host", "--model", "--served-model-name", "--api-key"}
        clash = sorted({a.split("=", 1)[0] for a in value} & managed)
        if clash:
            raise ValueError(f"{', '.join(clash)} is set by triptyque; remove it from extra_args")
        return value


class Resources(_Strict):
    gpu_count: int = Field(ge=0, le=64)
    gpu_type: str
    cpu: Quantity
    memory: Quantity

    @model_validator(mode="after")
    def _gpu_type_matches_count(self) -> Resources:
        if self.gpu_count == 0 and self.gpu_type != "none":
            raise ValueError("gpu_type must be 'none' when gpu_count is 0")
        if self.gpu_count > 0 and self.gpu_type == "none":
            raise ValueError("gpu_type must name a GPU when gpu_count is above 0")
        return self


class ApiKey(_Strict):
    sha256: str = Field(description="Hex SHA-256 of the key; the key itself is never stored.")

    @field_validator("sha256")
    @classmethod
    def _is_sha256(cls, value: str) -> str:
        if not _SHA256.match(value):
            raise ValueError("must be 64 lowercase hex characters (triptyque keys new NAME)")
        return value


class Limits(_Strict):
    max_body_bytes: int = Field(ge=1024, le=64 * 1024 * 1024)
    max_concurrent_requests: int = Field(ge=1, le=100_000)
    connect_timeout_seconds: float = Field(gt=0, le=60)
    first_byte_timeout_seconds: float = Field(gt=0, le=3600)
    idle_timeout_seconds: float = Field(gt=0, le=3600)
    # From a connection's first byte to the end of its request headers (slowloris).
    header_timeout_seconds: float = Field(default=10.0, gt=0, le=600)
    # Request line and headers in all, refused with 431 before they are buffered.
    max_header_bytes: int = Field(default=32 * 1024, ge=1024, le=1024 * 1024)
    # The request target (path and query), refused with 414.
    max_url_bytes: int = Field(default=8 * 1024, ge=256, le=64 * 1024)
    # Nesting of JSON request bodies (objects and arrays), refused with 400.
    max_json_depth: int = Field(default=64, ge=2, le=512)


class Gateway(_Strict):
    port: int = Field(ge=1, le=65535)
    api_keys: dict[KeyName, ApiKey] = Field(default_factory=dict)
    admin_keys: dict[KeyName, ApiKey] = Field(default_factory=dict)
    limits: Limits


class KillSwitch(_Strict):
    enabled: bool = True
    require_reason: bool = True
    cut_streams: bool = True
    stop_engine_on_hard_kill: bool = True
    # Two-person rule: a resume needs approvals from two different admin credentials within
    # the window (a kill never waits for anyone).
    two_person_resume: bool = False
    approval_window_seconds: int = Field(default=900, ge=1, le=86400)


class Slo(_Strict):
    availability: float = Field(gt=0.5, lt=1.0)
    ttft_p95_seconds: float = Field(gt=0)
    latency_p95_seconds: float = Field(gt=0)
    window_days: int = Field(ge=1, le=90)


PinnedImage = Annotated[
    str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._/:-]*(:[A-Za-z0-9._-]+)?@sha256:[0-9a-f]{64}$")
]


class Images(_Strict):
    """Container images for the Kubernetes targets, pinned by digest (a tag alone can move)."""

    engine: PinnedImage = Field(description="vllm/vllm-openai at engine.version, by digest.")
    gateway: PinnedImage = Field(description="The triptyque gateway image, by digest.")
    engine_cpu: PinnedImage | None = Field(
        default=None, description="vLLM's CPU build at engine.version, by digest (`triptyque image "
        "build` makes it): the engine of a target without GPUs (resources.gpu_count: 0).")


class ServiceSpec(_Strict):
    name: KeyName
    model: Model
    engine: Engine
    resources: Resources
    gateway: Gateway
    kill_switch: KillSwitch
    slo: Slo
    images: Images | None = Field(
        default=None, description="Required by the Kubernetes targets; unused by local and edge."
    )
    target: TargetName | None = Field(
        default=None, description="Set by load_spec once a target's overrides are applied."
    )
    spec_dir: Path | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _ports_differ(self) -> ServiceSpec:
        if self.engine.port == self.gateway.port:
            raise ValueError("engine.port and gateway.port must differ")
        return self

    @model_validator(mode="after")
    def _real_weights_on_gpus(self) -> ServiceSpec:
        # A resolved target with GPUs must serve the model itself, not random weights.
        if self.target is None or self.resources.gpu_count == 0:
            return self
        if self.engine.load_format == "dummy":
            raise ValueError("engine.load_format dummy serves random weights; a target with GPUs "
                             "needs real ones (auto)")
        folder = self.model_path
        if folder is not None and not any(any(folder.glob(p)) for p in WEIGHT_FILES):
            raise ValueError(f"model.source {self.model.source} holds no weights "
                             f"({', '.join(WEIGHT_FILES)}); a target with GPUs needs a real model: "
                             "a Hugging Face id at a pinned revision, or a folder with its weights")
        return self

    @property
    def model_is_local(self) -> bool:
        return self.model_path is not None

    @property
    def model_path(self) -> Path | None:
        """The model folder when ``model.source`` names one, else None (a hub id)."""
        base = self.spec_dir or Path.cwd()
        candidate = (base / self.model.source).resolve()
        return candidate if candidate.is_dir() else None

    def spec_hash(self) -> str:
        """A stable digest of the resolved spec, recorded with every deployment."""
        payload = self.model_dump(mode="json")
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Return ``base`` with ``override`` merged in; mappings merge, everything else replaces."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _problems(error: ValidationError, path: Path, where: str) -> list[str]:
    lines = []
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"].removeprefix("Value error, ")
        lines.append(f"{path}: {field}{where}: {message}")
    return lines


def read_raw(path: Path) -> dict[str, Any]:
    """Parse the YAML file; a missing file or bad YAML is a SpecError naming the line."""
    data = read_yaml(path, SpecError, "--spec")
    if not isinstance(data, dict):
        raise SpecError([f"{path}: the spec must be a YAML mapping, got {type(data).__name__}"])
    return data


def _resolve(raw: dict[str, Any], path: Path, target: TargetName | None,
             overlay: SpecOverlay | None) -> ServiceSpec:
    base = {key: value for key, value in raw.items() if key != "targets"}
    where = ""
    if target is not None and overlay is not None:
        overrides = (raw.get("targets") or {}).get(overlay) or {}
        base = deep_merge(base, overrides)
        base["target"] = target
        where = f" (with targets.{overlay} applied)"
    try:
        return ServiceSpec.model_validate({**base, "spec_dir": path.parent.resolve()})
    except ValidationError as exc:
        raise SpecError(_problems(exc, path, where)) from None


def load_spec(path: Path = DEFAULT_SPEC, target: str | None = None) -> ServiceSpec:
    """Load and validate the spec, with the overrides of ``target``'s overlay applied when given."""
    if target is None:
        return _resolve(read_raw(path), path, None, None)
    try:
        kind = kind_of(target)
    except ValueError as exc:
        raise SpecError([str(exc)]) from None
    return _resolve(read_raw(path), path, kind.name, kind.overlay)


def validate_file(path: Path) -> dict[str, ServiceSpec]:
    """Validate the base spec and every target; collect every problem before failing."""
    raw = read_raw(path)
    problems: list[str] = []
    targets = raw.get("targets") or {}
    if not isinstance(targets, dict):
        raise SpecError([f"{path}: targets: must be a mapping of target name to overrides"])
    for name in targets:
        if name not in OVERLAYS:
            problems.append(f"{path}: targets.{name}: unknown target overlay; use one of {', '.join(OVERLAYS)}")
        elif not isinstance(targets[name], dict | None):
            problems.append(f"{path}: targets.{name}: overrides must be a mapping")
    resolved: dict[str, ServiceSpec] = {}
    seen: set[str] = set()
    for overlay in (None, *OVERLAYS):
        if overlay is not None and not isinstance(targets.get(overlay), dict | None):
            continue
        try:
            resolved[overlay or "base"] = _resolve(raw, path, overlay, overlay)
        except SpecError as exc:
            # A problem of the base shows once, not again under every target.
            for problem in exc.problems:
                plain = re.sub(r" \(with targets\.\w+ applied\)", "", problem)
                if plain not in seen:
                    seen.add(plain)
                    problems.append(problem)
    if problems:
        raise SpecError(problems)
    return resolved
