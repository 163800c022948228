"""Layout pieces: pure functions returning Dash components. IDs live in :mod:`components.ids`."""
