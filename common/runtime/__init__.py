"""Where and how a run executes: devices, seeds, timing and memory (`device`), torchrun ranks and video
sharding (`distributed`), and one-line user errors with exit status 2 (`errors`)."""
