"""What an expression we ship reads, parsed with promql-parser (used by several monitoring tests)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import promql_parser

from triptyque.kinds import TargetName
from triptyque.monitoring import dashboards, rules
from triptyque.spec import ServiceSpec

COUNTING_FUNCTIONS = {"rate", "irate", "increase", "resets"}


@dataclass
class Usage:
    """What one expression reads."""

    names: set[str] = field(default_factory=set)
    counted: set[str] = field(default_factory=set)
    unscoped: set[str] = field(default_factory=set)


def usage(expr: str) -> Usage:
    found = Usage()

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            found.names.add(node.name)
            if not any(m.name == "job" for m in node.matchers.matchers):
                found.unscoped.add(node.name)
        if isinstance(node, promql_parser.Call) and node.func.name in COUNTING_FUNCTIONS:
            found.counted.add(node.args[0].vector_selector.name)

    promql_parser.walk(promql_parser.parse(expr), visit)
    return found


def shipped_expressions(spec: ServiceSpec, local_spec: ServiceSpec) -> dict[str, str]:
    """Where -> expression, for every rule of every target and every dashboard query."""
    out = {}
    targets: list[tuple[TargetName, ServiceSpec]] = [
        ("local", local_spec), ("edge", spec), ("onprem", spec)]
    for target, target_spec in targets:
        for group in rules.rule_groups(target_spec, target):
            for i, rule in enumerate(group["rules"]):
                name = rule.get("record") or rule.get("alert")
                out[f"{target} {group['name']}[{i}] {name}"] = rule["expr"]
    for board_name, board in dashboards.dashboards(spec).items():
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                out[f"{board_name} '{panel['title']}' {target['refId']}"] = target["expr"]
        for variable in board["templating"]["list"]:
            if variable["type"] == "query":
                selector = re.fullmatch(r"label_values\((.+), \w+\)", variable["query"])
                assert selector, variable["query"]
                out[f"{board_name} ${variable['name']}"] = selector.group(1)
    return out
