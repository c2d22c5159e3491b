"""Pipelines wire the components for each command: `run_<cmd>(args)`. Only pipelines, cli and ui see the
argument dataclasses."""
