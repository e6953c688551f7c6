"""flowlab plugin ``spline``: being written (see issue 10)."""
