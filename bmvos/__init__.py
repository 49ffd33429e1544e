"""bmvos package."""
