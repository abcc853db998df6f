"""Wiring above every layer: data collection from envs into episode files, and the reproducible sim recipes."""
