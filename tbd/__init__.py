"""tbd package."""
