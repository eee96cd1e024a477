"""Synthetic inputs for the bundled workloads (importable as ``claude_demo``)."""
