"""flowlab plugin ``autoregressive``: being written (see issue 10)."""
