#!/usr/bin/python3
"""Wait until a freshly started release serves; fail at once if one of its units crashes.

Passes when the gateway's /readyz answers 200, or answers 503 only because the kill
switch is engaged while the engine's /health answers 200 (a killed fleet can still be
upgraded). Fails as soon as a unit restarts or fails, printing the end of its journal,
or when the timeout runs out.
"""

import argparse
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request


def unit_state(unit):
    out = subprocess.run(
        ["systemctl", "show", unit, "--property=NRestarts,ActiveState,SubState,Result"],
        capture_output=True, text=True, check=False).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def journal(unit, lines=40):
    """The unit's last error line first (what an operator needs), then the end of its log."""
    text = subprocess.run(["journalctl", "--unit", unit, "--lines", str(lines), "--no-pager",
                           "--output", "cat"], capture_output=True, text=True, check=False).stdout
    tail = [line for line in text.splitlines() if line.strip() and set(line.strip()) != {"^"}]
    errors = [line.strip() for line in tail if "Error" in line or "error:" in line]
    cause = f"cause: {errors[-1]}\n" if errors else ""
    return cause + "\n".join(tail[-8:])


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except (OSError, ValueError):
        return None, b""


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ready-url", required=True)
    parser.add_argument("--engine-url", required=True)
    parser.add_argument("--unit", action="append", default=[])
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args()
    started = time.monotonic()
    baseline = {unit: int(unit_state(unit).get("NRestarts") or 0) for unit in args.unit}
    last = "no answer yet"
    while time.monotonic() - started < args.timeout:
        for unit in args.unit:
            state = unit_state(unit)
            restarts = int(state.get("NRestarts") or 0) - baseline[unit]
            if restarts > 0 or state.get("ActiveState") == "failed" or state.get("SubState") == "auto-restart":
                print(f"{unit} crashed during the health gate ({state.get('ActiveState')}/"
                      f"{state.get('SubState')}, result {state.get('Result')}, {restarts} restart(s)); "
                      f"{journal(unit)}", file=sys.stderr)
                return 1
        status, body = get(args.ready_url)
        if status == 200:
            print(f"ready after {time.monotonic() - started:.1f} s")
            return 0
        try:
            killed = status == 503 and json.loads(body).get("kill_switch_engaged") is True
        except ValueError:
            killed = False
        if killed and get(args.engine_url)[0] == 200:
            print(f"engine ready after {time.monotonic() - started:.1f} s; kill switch engaged")
            return 0
        last = f"HTTP {status}: {body[:200].decode(errors='replace')}" if status else "no answer"
        time.sleep(1)
    print(f"not ready after {args.timeout:.0f} s; last readiness answer: {last}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
