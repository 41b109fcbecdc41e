"""Keys are created with mode 600 and never printed; the three commands, thin over the package."""

from __future__ import annotations

import json
import shutil
import stat

from typer.testing import CliRunner

from triptyque.cli import app
from triptyque.evidence import EvidenceError, build_bundle, generate
from triptyque.evidence.signing import load_private

runner = CliRunner()


def test_keygen_creates_a_private_key_with_mode_600_and_the_public_key_beside_it(tmp_path):
    result = runner.invoke(app, ["evidence", "keygen", "--key", str(tmp_path / "keys" / "evidence.key")])
    assert result.exit_code == 0, result.output
    private, public = tmp_path / "keys" / "evidence.key", tmp_path / "keys" / "evidence.key.pub"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert public.read_text().startswith("-----BEGIN PUBLIC KEY-----")
    secret = private.read_text()
    body = "".join(line for line in secret.splitlines() if not line.startswith("-----"))
    assert "PRIVATE KEY" not in result.output and body not in result.output and body[:16] not in result.output
    assert "fingerprint" in result.output


def test_keygen_never_replaces_a_key(tmp_path):
    pair = generate(tmp_path / "evidence.key")
    before = pair.private.read_bytes()
    result = runner.invoke(app, ["evidence", "keygen", "--key", str(pair.private)])
    assert result.exit_code == 1
    assert "exists already" in result.output and "Traceback" not in result.output
    assert pair.private.read_bytes() == before


def test_a_key_others_can_read_is_refused(tmp_path):
    pair = generate(tmp_path / "evidence.key")
    pair.private.chmod(0o644)
    try:
        load_private(pair.private)
    except EvidenceError as exc:
        assert "readable by others" in str(exc) and "BEGIN" not in str(exc)
    else:
        raise AssertionError("a key with mode 644 was accepted")


def test_build_without_a_key_says_how_to_make_one(tmp_path):
    try:
        build_bundle("local", spec_path=tmp_path / "none.yaml", key_path=tmp_path / "missing.key",
                     out_dir=tmp_path / "out", state_dir=tmp_path / "state", root=tmp_path, cache=tmp_path)
    except EvidenceError as exc:
        assert "triptyque evidence keygen" in str(exc)
    else:
        raise AssertionError("built without a key")


def test_build_and_verify_commands_and_a_one_line_error_without_traceback(checkout, key, state_dir, cache,
                                                                            tmp_path, monkeypatch):
    monkeypatch.setenv("TRIPTYQUE_CACHE", str(cache))
    monkeypatch.chdir(checkout)  # the checkout whose revision the bundle records
    out = tmp_path / "out"
    result = runner.invoke(app, ["evidence", "build", "--target", "local", "--spec", "serving/service.yaml",
                                 "--state-dir", str(state_dir), "--out", str(out), "--key", str(key)])
    assert result.exit_code == 0, result.output
    assert "BEGIN" not in result.output
    archive = out / "evidence-local.tar"
    result = runner.invoke(app, ["evidence", "verify", str(archive), "--key", str(key) + ".pub"])
    assert result.exit_code == 0, result.output
    assert "signed by the trusted key" in result.output and "audit chain intact (2 entries" in result.output

    folder = shutil.copytree(out / "evidence-local", tmp_path / "copy")
    listed = json.loads((folder / "MANIFEST.json").read_text())
    name = listed["files"][0]["path"]
    (folder / name).write_bytes((folder / name).read_bytes() + b" ")
    result = runner.invoke(app, ["evidence", "verify", str(folder)])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: changed: {name} "), result.output
    assert "Traceback" not in result.output

    result = runner.invoke(app, ["evidence", "verify", str(tmp_path / "nothing")])
    assert result.exit_code == 1 and "no bundle at" in result.output
