"""Reports: render results as rich tables and JSON documents; they never compute results."""
