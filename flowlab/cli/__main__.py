import sys

from flowlab.cli import main

sys.exit(main())
