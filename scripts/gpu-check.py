#!/usr/bin/env python3
"""Check an edge GPU bundle on a machine with an NVIDIA GPU: one PASS/FAIL line per check.

    python3 scripts/gpu-check.py --bundle DIR --model DIR [--workdir DIR] [--port 28080]

It does what the edge role (playbooks/roles/triptyque, tasks/install.yml) does on a GPU
node, offline, then starts the engine:

  driver    nvidia-smi -q's "CUDA Version" (the highest the driver supports) is at least
            the CUDA of the bundle's GPU wheels (manifest.json "cuda"), as the preflight asks
  debs      the system component's Debian packages the machine lacks, in one dpkg --install
            (root only; gcc, libc6-dev and the Python headers are among them)
  venv      a virtualenv made with --without-pip, the engine-gpu wheels installed with the
            bundle's pip, --no-index --no-deps
  compiler  the C compiler and the Python headers build and import a C extension, as
            Triton's launcher is built (triton/runtime/build.py: cc, Python.h)
  triton    a Triton kernel compiles and runs on the GPU from that virtualenv
  vllm      vLLM serves --model offline (HF_HUB_OFFLINE=1): /health, then one completion

Standard library only: it runs with the machine's python3 before anything is installed.
Exit status 0 when every check passed. A check whose prerequisite failed is reported
FAIL with "skipped". Nothing here has run on a GPU from this repository's CI.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

CHECKS = ("driver", "debs", "venv", "compiler", "triton", "vllm")


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'PASS' if self.ok else 'FAIL'} {self.name}: {self.detail}"


def driver_cuda(nvidia_smi_q: str) -> str | None:
    """The CUDA version ``nvidia-smi -q`` says the driver supports ("CUDA Version : 12.4")."""
    found = re.search(r"^\s*CUDA Version\s*:\s*([0-9]+(?:\.[0-9]+)*)\s*$", nvidia_smi_q, re.MULTILINE)
    return found.group(1) if found else None


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def check_driver(nvidia_smi_q: str | None, bundle_cuda: str | None) -> Check:
    if bundle_cuda is None:
        return Check("driver", False, "the bundle records no CUDA version: it has no GPU engine build")
    if nvidia_smi_q is None:
        return Check("driver", False, "nvidia-smi -q failed or is missing: no NVIDIA driver")
    supported = driver_cuda(nvidia_smi_q)
    if supported is None:
        return Check("driver", False, "nvidia-smi -q names no CUDA Version")
    if version_tuple(supported) < version_tuple(bundle_cuda):
        return Check("driver", False, f"the driver supports CUDA {supported}, the wheels need {bundle_cuda}: "
                                      "upgrade the driver")
    return Check("driver", True, f"the driver supports CUDA {supported} >= {bundle_cuda} (the wheels')")


def missing_debs(debs: list[Path], dpkg_query: str) -> list[Path]:
    """The bundle's packages whose name ``dpkg-query --show -f '${Package} ${db:Status-Status}\\n'``
    does not report installed (the role's rule)."""
    installed = {line.split(" ", 1)[0] for line in dpkg_query.splitlines() if line.endswith(" installed")}
    return sorted(deb for deb in debs if deb.name.split("_", 1)[0] not in installed)


def load_manifest(bundle: Path) -> dict[str, object]:
    try:
        manifest: dict[str, object] = json.loads((bundle / "manifest.json").read_text())
    except (OSError, ValueError) as exc:
        raise SystemExit(f"error: {bundle}: no readable manifest.json ({type(exc).__name__}); "
                         "pass the folder `triptyque bundle --device gpu` wrote") from None
    components = manifest.get("components")
    if not isinstance(components, dict) or "engine-gpu" not in components or "system" not in components:
        raise SystemExit(f"error: {bundle}: the bundle has no engine-gpu and system components; "
                         "build it with `triptyque bundle --device gpu`")
    return manifest


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="gpu-check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, required=True, help="a bundle folder with a GPU engine build")
    parser.add_argument("--model", type=Path, required=True,
                        help="a small real model folder (config, tokenizer, weights), served offline")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "triptyque-gpu-check")
    parser.add_argument("--port", type=int, default=28080)
    parser.add_argument("--startup-seconds", type=float, default=900.0,
                        help="how long vLLM may take to answer /health")
    parser.add_argument("--only", choices=CHECKS, action="append",
                        help="run only these checks (repeatable); the others are skipped")
    args = parser.parse_args(argv)
    if not (args.model / "config.json").is_file():
        parser.error(f"--model {args.model}: no config.json there; pass a model folder")
    if not 1 <= args.port <= 65535:
        parser.error(f"--port {args.port}: not a TCP port")
    return args


def _run(argv: list[str], timeout: float = 1800, **options: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False, **options)  # type: ignore[call-overload, no-any-return]


def _tail(text: str) -> str:
    return " ".join(text.strip().splitlines()[-2:])[-300:]


def _unpack(bundle: Path, component: dict[str, str], store: Path) -> Path:
    target = store / component["id"]
    if not target.is_dir():
        with tarfile.open(bundle / component["archive"]) as tar:
            tar.extractall(target, filter="data")
    return target


class Runner:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.manifest = load_manifest(args.bundle)
        self.components: dict[str, dict[str, str]] = self.manifest["components"]  # type: ignore[assignment]
        self.venv = args.workdir / "envs" / "engine-gpu"
        self.python = self.venv / "bin" / "python"

    def driver(self) -> Check:
        done = _run(["nvidia-smi", "-q"], timeout=60) if shutil.which("nvidia-smi") else None
        return check_driver(done.stdout if done and done.returncode == 0 else None,
                            self.manifest.get("cuda"))  # type: ignore[arg-type]

    def debs(self) -> Check:
        system = _unpack(self.args.bundle, self.components["system"], self.args.workdir / "store")
        debs = sorted((system / "debs").glob("*.deb"))
        names = [deb.name.split("_", 1)[0] for deb in debs]
        query = _run(["dpkg-query", "--show", "--showformat", "${Package} ${db:Status-Status}\n", *names])
        missing = missing_debs(debs, query.stdout)
        if not missing:
            return Check("debs", True, f"all {len(debs)} packages of the bundle are installed")
        if os.geteuid() != 0:
            return Check("debs", False, f"{len(missing)} packages missing and dpkg needs root: run as root")
        done = _run(["dpkg", "--install", *map(str, missing)])
        if done.returncode != 0:
            return Check("debs", False, f"dpkg --install failed: {_tail(done.stderr)}")
        return Check("debs", True, f"installed {len(missing)} of {len(debs)} packages in one dpkg run")

    def venv_check(self) -> Check:
        system = _unpack(self.args.bundle, self.components["system"], self.args.workdir / "store")
        engine = _unpack(self.args.bundle, self.components["engine-gpu"], self.args.workdir / "store")
        pips = sorted((system / "wheels").glob("pip-*.whl"))
        if not pips:
            return Check("venv", False, "the system component holds no pip wheel")
        if self.venv.exists():
            shutil.rmtree(self.venv)
        made = _run(["python3", "-m", "venv", "--without-pip", str(self.venv)])
        if made.returncode != 0:
            return Check("venv", False, f"python3 -m venv failed: {_tail(made.stderr)}")
        wheels = sorted(map(str, (engine / "wheels").glob("*.whl")))
        done = _run([str(self.python), f"{pips[0]}/pip", "install", "--no-index", "--no-deps", "--no-compile",
                     "--no-cache-dir", "--quiet", "--disable-pip-version-check", *wheels])
        if done.returncode != 0:
            return Check("venv", False, f"pip install --no-index failed: {_tail(done.stderr)}")
        return Check("venv", True, f"{len(wheels)} wheels installed offline")

    def compiler(self) -> Check:
        source = textwrap.dedent("""
            import os, pathlib, shutil, subprocess, sys, sysconfig, tempfile, importlib.util
            cc = os.environ.get("CC") or shutil.which("gcc") or shutil.which("clang") or shutil.which("cc")
            if cc is None:
                sys.exit("no C compiler on PATH")
            folder = pathlib.Path(tempfile.mkdtemp())
            (folder / "probe.c").write_text(
                '#include <Python.h>\\nstatic struct PyModuleDef m = {PyModuleDef_HEAD_INIT, "probe"};\\n'
                'PyMODINIT_FUNC PyInit_probe(void) { return PyModule_Create(&m); }\\n')
            so = folder / ("probe" + sysconfig.get_config_var("EXT_SUFFIX"))
            subprocess.run([cc, str(folder / "probe.c"), "-O3", "-shared", "-fPIC",
                            "-I" + sysconfig.get_paths()["include"], "-o", str(so)], check=True)
            spec = importlib.util.spec_from_file_location("probe", so)
            spec.loader.exec_module(importlib.util.module_from_spec(spec))
            print(cc)
        """)
        done = _run([str(self.python), "-c", source], timeout=120)
        if done.returncode != 0:
            return Check("compiler", False, f"a Python C extension does not build: {_tail(done.stderr)}")
        return Check("compiler", True, f"{done.stdout.strip()} builds against the Python headers")

    def triton(self) -> Check:
        source = textwrap.dedent("""
            import torch, triton, triton.language as tl
            @triton.jit
            def add(x, y, out, n, BLOCK: tl.constexpr):
                i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
                tl.store(out + i, tl.load(x + i, mask=i < n) + tl.load(y + i, mask=i < n), mask=i < n)
            x = torch.arange(1000, device="cuda", dtype=torch.float32)
            out = torch.empty_like(x)
            add[(4,)](x, x, out, 1000, BLOCK=256)
            assert torch.equal(out, 2 * x), "wrong result"
            print(triton.__version__, torch.version.cuda)
        """)
        env = {**os.environ, "TRITON_CACHE_DIR": str(self.args.workdir / "triton-cache")}
        done = _run([str(self.python), "-c", source], timeout=600, env=env)
        if done.returncode != 0:
            return Check("triton", False, f"the kernel did not compile or run: {_tail(done.stderr)}")
        triton_version, cuda = [*done.stdout.split(), "?", "?"][:2]
        return Check("triton", True, f"Triton {triton_version} compiled its launcher and ran on CUDA {cuda}")

    def vllm(self) -> Check:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        log = self.args.workdir / "vllm.log"
        url = f"http://127.0.0.1:{self.args.port}"
        with log.open("w") as output:
            process = subprocess.Popen(
                [str(self.python), "-m", "vllm.entrypoints.openai.api_server", "--model", str(self.args.model),
                 "--served-model-name", "check", "--host", "127.0.0.1", "--port", str(self.args.port),
                 "--max-model-len", "2048", "--gpu-memory-utilization", "0.5"],
                stdout=output, stderr=subprocess.STDOUT, env=env)
        try:
            deadline = time.monotonic() + self.args.startup_seconds
            while not _answers(f"{url}/health"):
                if process.poll() is not None:
                    return Check("vllm", False, f"exited {process.returncode}: {_tail(log.read_text())}")
                if time.monotonic() > deadline:
                    return Check("vllm", False, f"no /health within {self.args.startup_seconds:g} s")
                time.sleep(2)
            body = json.dumps({"model": "check", "prompt": "Hello", "max_tokens": 8}).encode()
            request = urllib.request.Request(f"{url}/v1/completions", data=body,
                                             headers={"content-type": "application/json"})
            with urllib.request.urlopen(request, timeout=120) as answer:
                text = json.loads(answer.read())["choices"][0]["text"]
            return Check("vllm", True, f"served offline; a completion returned {len(text)} characters")
        except (OSError, ValueError, KeyError) as exc:
            return Check("vllm", False, f"the completion failed: {type(exc).__name__}: {exc}")
        finally:
            process.terminate()
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


# Which checks each one needs to have passed first.
NEEDS: dict[str, tuple[str, ...]] = {
    "driver": (), "debs": (), "venv": (), "compiler": ("debs", "venv"),
    "triton": ("driver", "compiler"), "vllm": ("triton",),
}


def run_checks(steps: Mapping[str, Callable[[], Check]], only: list[str] | None = None) -> list[Check]:
    """Run ``steps`` (name -> callable returning a Check) in CHECKS order; a check whose
    prerequisite failed, or that ``only`` leaves out, is not run."""
    results: dict[str, Check] = {}
    unselected: set[str] = set()
    for name in CHECKS:
        failed = [need for need in NEEDS[name] if need not in unselected and not results[need].ok]
        if only and name not in only:
            unselected.add(name)
            results[name] = Check(name, False, "skipped: not selected with --only")
        elif failed:
            results[name] = Check(name, False, f"skipped: {', '.join(failed)} failed")
        else:
            try:
                results[name] = steps[name]()
            except (OSError, subprocess.SubprocessError, tarfile.TarError) as exc:
                results[name] = Check(name, False, f"{type(exc).__name__}: {exc}")
        print(results[name].line(), flush=True)
    return list(results.values())


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    runner = Runner(args)
    args.workdir.mkdir(parents=True, exist_ok=True)
    steps = {"driver": runner.driver, "debs": runner.debs, "venv": runner.venv_check,
             "compiler": runner.compiler, "triton": runner.triton, "vllm": runner.vllm}
    results = run_checks(steps, args.only)
    chosen = [r for r in results if not args.only or r.name in args.only]
    return 0 if all(r.ok for r in chosen) else 1


if __name__ == "__main__":
    sys.exit(main())
