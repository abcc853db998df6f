"""The ground floor: what every layer shares (rotations and poses, the DROID conventions, seeds, devices,
typed configs, the command-line runner). It imports nothing from `envs`, `datasets`, `world_model` or
`planners`, and nothing heavy at import time (torch is imported inside the functions that need it)."""
