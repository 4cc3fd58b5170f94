"""The orchestration layer: what the commands do with the compiler and the runtime together. It is the only
code (with the commands above it) that imports both; the compiler and the runtime meet nowhere else but the
plan (docs/architecture.md).

- build.py: the one build path, compile -> emit -> write (or compare with a folder), for every command;
- sweep.py: a sweep's trial loop (draw -> compile with the trial's overrides -> write -> execute), and its
  outputs (sweep_report.py) and command (sweep_command.py).
"""
