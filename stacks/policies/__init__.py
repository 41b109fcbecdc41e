"""The triptyque CrossGuard policy pack (run with `--policy-pack stacks/policies`)."""
