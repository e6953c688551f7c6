"""``python -m flowlab``: the ``flowlab`` command (for environments where the console script is not on PATH)."""

from flowlab.cli import main

raise SystemExit(main())
