"""hmmn package."""
