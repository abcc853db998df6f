"""planners: see README.md and ../shared/DESIGN.md."""
