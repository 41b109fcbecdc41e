"""The playbooks pass ansible-lint's production profile and Ansible's syntax check."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.support import ROOT
from triptyque.edge.runner import ansible_tool

PLAYBOOKS = ROOT / "playbooks"
EXAMPLE = PLAYBOOKS / "inventories" / "example.yml"
ENV = {**os.environ, "ANSIBLE_CONFIG": str(PLAYBOOKS / "ansible.cfg"), "NO_COLOR": "1"}


def test_ansible_lint_production_profile_is_clean():
    result = subprocess.run([ansible_tool("ansible-lint"), "--offline", "playbooks"], cwd=ROOT,
                            env=ENV, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "Profile 'production' was required, and it passed" in result.stderr + result.stdout


@pytest.mark.parametrize("playbook", sorted(p.name for p in PLAYBOOKS.glob("*.yml")
                                            if p.name != "requirements.yml"))
def test_every_playbook_passes_the_syntax_check(playbook):
    result = subprocess.run([ansible_tool("ansible-playbook"), "--syntax-check", "-i", str(EXAMPLE),
                             playbook], cwd=PLAYBOOKS, env=ENV, capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_role_documents_its_arguments_and_declares_handlers_it_notifies():
    for role in (PLAYBOOKS / "roles").iterdir():
        assert (role / "meta" / "argument_specs.yml").is_file(), role.name
        assert (role / "defaults" / "main.yml").is_file(), role.name
        tasks = "".join(p.read_text() for p in (role / "tasks").glob("*.yml"))
        if "notify:" in tasks:
            assert (role / "handlers" / "main.yml").is_file(), role.name
