"""`python -m aedfast` is the `aedfast` command."""

import sys

from .cli import main

sys.exit(main())
