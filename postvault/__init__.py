"""postvault: the composition root (settings, wiring, CLI, background work)."""
