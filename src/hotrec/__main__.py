"""`python -m hotrec`: the command line (what torchrun starts on every rank)."""

import sys

from hotrec.cli.main import main

sys.exit(main())
