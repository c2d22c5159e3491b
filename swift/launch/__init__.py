"""Distributed launch: plan the world from flags and ms-swift's environment, relaunch under torchrun, and turn the
strategy (ddp, fsdp, deepspeed) into what transformers' Trainer runs.

`swift.launch.launcher` imports nothing heavy: the CLI asks it whether to relaunch before torch is imported.
"""
