"""The conformance kit: property checks any flow plugin must pass (see ``base.py`` for the records)."""
