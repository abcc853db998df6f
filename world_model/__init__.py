"""world_model: see README.md and ../shared/DESIGN.md."""
