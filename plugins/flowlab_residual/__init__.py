"""flowlab plugin ``residual``: being written (see issue 10)."""
