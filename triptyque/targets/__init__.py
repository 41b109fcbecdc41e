"""Deployment targets. Each module implements ``triptyque.targets.base.Target``."""
