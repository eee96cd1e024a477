"""Synthetic inputs for the bundled workloads and their answers in the emulator (importable as
``claude_demo``)."""
