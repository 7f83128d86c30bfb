"""The fork's patch series over the pinned upstream crewai sdist (see tool.py and README.md)."""
