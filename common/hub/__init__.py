"""What is downloaded: the registries of official checkpoints (`checkpoints`) and of the authors' released
results (`results`), which each paper package fills with its own entries, the cache they share, and the
checked, atomic downloads (`download`)."""
