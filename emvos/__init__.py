"""emvos package."""
