"""Session-scoped fixtures that run real multi-process torch jobs (filled in by the demo work)."""
