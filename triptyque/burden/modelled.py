"""Drills that cannot run here, modelled from sourced figures: the Kubernetes targets.

There is no cluster on this machine or in CI, so onprem and cloud drills are computed
from the figures of ``burden/figures.yaml`` (each result names the figure ids behind
it) and shown as modelled, never as measured. The edge target's crash recovery is
modelled the same way when no edge drill has run: systemd's restart delay from the
playbook defaults plus the engine start measured on the local target, as a proxy.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from triptyque.burden.figures import Figures


@dataclass
class ModelledDrill:
    target: str
    drill: str
    phases: dict[str, dict[str, Any]]
    metrics: dict[str, float]
    figures: list[str]
    human_steps: int
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _phases(figures: Figures, steps: list[tuple[str, list[str]]]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    at, phases, used = 0.0, {}, []
    for phase, ids in steps:
        seconds = sum(figures.value(i) for i in ids)
        at += seconds
        phases[phase] = {"at": round(at, 3), "seconds": round(seconds, 3), "source": " + ".join(ids)}
        used += ids
    return phases, used


def kubernetes_drills(target: str, figures: Figures, *, gpu_operator: bool) -> list[ModelledDrill]:
    """Deploy, kill, crash and scale drills of ``onprem`` or ``cloud``, from figures."""
    infra = (["k8s.cluster_ready_s", "k8s.gpu_operator_ready_s"] if target == "cloud"
             else (["k8s.gpu_operator_ready_s"] if gpu_operator else []))
    phases, used = _phases(figures, [
        *([("infra_ready", infra)] if infra else []),
        ("engine_installed", ["k8s.image_pull_s"]),
        ("weights_loaded", ["k8s.weights_loaded_s"]),
        ("ready", ["k8s.engine_ready_s"]),
        ("first_token", ["k8s.first_token_s"]),
    ])
    deploy = ModelledDrill(target, "deploy", phases, {"time_to_serve_seconds": phases["first_token"]["at"]},
                           used, 1, ["An existing cluster is assumed on-prem." if target == "onprem"
                                     else "Kapsule cluster, pools and GPU operator created by the stack."])
    follow = figures.value("k8s.killswitch_follow_s")
    kill_soft = ModelledDrill(target, "kill-soft", {}, {"time_to_refuse_all_seconds": follow},
                              ["k8s.killswitch_follow_s"], 1,
                              ["Every gateway replica follows the shared kill-switch state."])
    restart = figures.value("k8s.weights_loaded_s") + figures.value("k8s.engine_ready_s")
    kill_hard = ModelledDrill(target, "kill-hard", {}, {
        "time_to_refuse_all_seconds": follow, "engine_stop_seconds": figures.value("k8s.pod_grace_s"),
        "time_to_serve_again_seconds": restart},
        ["k8s.killswitch_follow_s", "k8s.pod_grace_s", "k8s.weights_loaded_s", "k8s.engine_ready_s"], 2,
        ["The engine scales to zero; resume scales it back, weights from the model cache volume."])
    detect = figures.value("k8s.liveness_detection_s")
    crash = ModelledDrill(target, "engine-crash", {}, {
        "detection_seconds": detect, "time_to_restore_seconds": detect + restart},
        ["k8s.liveness_detection_s", "k8s.weights_loaded_s", "k8s.engine_ready_s"], 0,
        ["The kubelet restarts the container after the liveness probe fails; no human step."])
    scale_ids = (["k8s.node_ready_s", "k8s.gpu_operator_ready_s"] if target == "cloud" else []) + [
        "k8s.image_pull_s", "k8s.weights_loaded_s", "k8s.engine_ready_s"]
    scale_out = ModelledDrill(target, "scale-out", {}, {
        "time_to_serve_seconds": sum(figures.value(i) for i in scale_ids)}, scale_ids, 0 if target == "cloud" else 1,
        ["A new GPU node is created and billed from creation." if target == "cloud"
         else "Within existing GPU capacity; buying a server takes weeks and is not modelled."])
    scale_in = ModelledDrill(target, "scale-in", {}, {
        "time_to_release_seconds": figures.value("k8s.keda_scale_in_s") + figures.value("k8s.pod_grace_s")},
        ["k8s.keda_scale_in_s", "k8s.pod_grace_s"], 0, ["KEDA's default cool-down, then the pod's grace period."])
    return [deploy, kill_soft, kill_hard, crash, scale_out, scale_in]


def edge_crash_proxy(restart_sec: float, local_engine_start: float, local_ref: str) -> ModelledDrill:
    """Edge engine crash when no edge drill has run: systemd restart delay + a local engine start."""
    return ModelledDrill("edge", "engine-crash", {}, {
        "time_to_restore_seconds": restart_sec + local_engine_start},
        [], 0, [f"systemd RestartSec={restart_sec:g} s (playbooks/roles/triptyque/defaults/main.yml) + "
                f"engine start measured on the local target ({local_ref}) as a proxy; no human step."])
