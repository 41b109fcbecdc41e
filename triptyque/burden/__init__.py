"""What each target really costs to run: drills, ledger, static burden, TCO, exit cost, report.

    figures.py   default figures (burden/figures.yaml): value, unit, source, date, confidence
    scenario.py  a TCO scenario file, validated; overrides of any figure
    units.py     the valid range of every figure unit
    inputs.py    strict YAML (no duplicate keys), the 4e8 hint, input file hashes
    sizing.py    one model on one device type: GPUs per replica, requests, tokens/s; pure
    deployed.py  the cloud stack's billable resources, from Pulumi.cloud.yaml
    tco.py       TCO per option (edge, onprem, cloud, buy) over the horizon; pure
    decision.py  ranges from confidence, sensitivity, break-even vs the managed API; pure
    static.py    what a team must own, counted from the artefacts on disk
    ledger.py    every deploy, drill and kill-switch action, in SQLite
    drills.py    scripted operations over the Target protocol, timed phase by phase
    hooks.py, edge_hooks.py   what drills need beyond the protocol, per target
    modelled.py  drills that cannot run here (Kubernetes), from figures
    exit.py, scorecard.py     exit cost; value / risk / dependency / data / run scores
    compare.py   all of it for one scenario; report.py + charts.py write HTML, Markdown, JSON
    commands.py, tour.py      what the CLI and the demo call
"""
