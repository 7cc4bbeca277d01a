"""`python -m publisher` is the same as the `publisher` console script."""

import sys

from publisher.cli import main

sys.exit(main())
