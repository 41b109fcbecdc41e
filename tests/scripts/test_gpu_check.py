"""scripts/gpu-check.py on the CPU: its arguments and the logic of its checks.

The checks themselves need a lent GPU machine with the GPU bundle on it; they have not
run from this repository (README, what was and was not exercised). Here the driver check
reads nvidia-smi output as NVIDIA's driver prints it ("CUDA Version : 12.4" in
``nvidia-smi -q``, the highest CUDA the driver supports), and a fake nvidia-smi on PATH
drives the real check.
"""

from __future__ import annotations

import importlib.util
import json
import stat
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.support import ROOT

SCRIPT = ROOT / "scripts" / "gpu-check.py"

NVIDIA_SMI_Q = """
==============NVSMI LOG==============

Timestamp                                 : Tue Dec  1 10:00:00 2026
Driver Version                            : 550.54.15
CUDA Version                              : {cuda}

Attached GPUs                             : 1
GPU 00000000:01:00.0
    Product Name                          : NVIDIA L4
"""


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module
    spec.loader.exec_module(module)
    return module


gpu_check = load()


def test_the_driver_must_support_at_least_the_cuda_of_the_bundle_s_wheels() -> None:
    assert gpu_check.driver_cuda(NVIDIA_SMI_Q.format(cuda="12.4")) == "12.4"
    older = gpu_check.check_driver(NVIDIA_SMI_Q.format(cuda="12.4"), "12.8")
    assert not older.ok and older.line().startswith("FAIL driver: the driver supports CUDA 12.4")
    newer = gpu_check.check_driver(NVIDIA_SMI_Q.format(cuda="12.10"), "12.8")  # 12.10 > 12.8, not a string order
    assert newer.ok and newer.line().startswith("PASS driver:")
    assert not gpu_check.check_driver(None, "12.8").ok
    assert not gpu_check.check_driver(NVIDIA_SMI_Q.format(cuda="12.9"), None).ok


def test_only_the_packages_dpkg_does_not_report_installed_are_installed(tmp_path: Path) -> None:
    debs = [tmp_path / name for name in ("gcc-12_12.2.0-14_amd64.deb", "libc6-dev_2.36-9_amd64.deb",
                                         "libnuma1_2.0.16-1_amd64.deb")]
    query = "gcc-12 installed\nlibc6-dev not-installed\n"
    assert [d.name for d in gpu_check.missing_debs(debs, query)] == [
        "libc6-dev_2.36-9_amd64.deb", "libnuma1_2.0.16-1_amd64.deb"]


def test_a_failed_check_skips_the_checks_that_need_it_and_each_prints_one_line(capsys: Any) -> None:
    Check = gpu_check.Check
    steps = {name: (lambda name=name: Check(name, name != "compiler", "x")) for name in gpu_check.CHECKS}
    results = gpu_check.run_checks(steps)
    lines = capsys.readouterr().out.splitlines()
    assert lines == [r.line() for r in results] and len(lines) == len(gpu_check.CHECKS)
    by_name = {r.name: r for r in results}
    assert by_name["driver"].ok and by_name["venv"].ok
    assert by_name["triton"].detail == "skipped: compiler failed"
    assert by_name["vllm"].detail == "skipped: triton failed"
    only = gpu_check.run_checks(steps, ["vllm"])
    assert {r.name: r.ok for r in only}["vllm"] is True  # unselected prerequisites do not block


def test_the_driver_check_reads_a_real_nvidia_smi_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "bin" / "nvidia-smi"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\ncat <<'EOF'\n{NVIDIA_SMI_Q.format(cuda='12.4')}EOF\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{fake.parent}:/usr/bin:/bin")
    bundle, model = tmp_path / "bundle", tmp_path / "model"
    bundle.mkdir()
    model.mkdir()
    (model / "config.json").write_text("{}")
    (bundle / "manifest.json").write_text(json.dumps({"cuda": "12.8", "components": {
        "engine-gpu": {"id": "engine-gpu-1", "archive": "e.tar"}, "system": {"id": "s", "archive": "s.tar"}}}))
    runner = gpu_check.Runner(gpu_check.parse_args(["--bundle", str(bundle), "--model", str(model)]))
    check = runner.driver()
    assert check.line() == ("FAIL driver: the driver supports CUDA 12.4, the wheels need 12.8: "
                            "upgrade the driver")


def test_bad_arguments_are_one_line_without_a_traceback(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(SCRIPT), "--bundle", str(tmp_path), "--model", str(tmp_path)],
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 2
    assert "--model" in done.stderr and "no config.json there" in done.stderr
    assert "Traceback" not in done.stderr
    (tmp_path / "config.json").write_text("{}")
    done = subprocess.run([sys.executable, str(SCRIPT), "--bundle", str(tmp_path), "--model", str(tmp_path)],
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 1 and "no readable manifest.json" in done.stderr
    assert "Traceback" not in done.stderr
