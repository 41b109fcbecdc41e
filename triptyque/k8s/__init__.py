"""Pure renderers for the Kubernetes targets: spec + stack config -> objects as dicts.

Nothing here talks to a cluster; ``stacks/`` turns the objects into Pulumi resources
and ``triptyque render`` writes them as YAML for GitOps.
"""

from triptyque.k8s.config import StackConfig, load_stack_config
from triptyque.k8s.render import render, write_manifests

__all__ = ["StackConfig", "load_stack_config", "render", "write_manifests"]
