"""flowlab plugin ``glow``: being written (see issue 10)."""
