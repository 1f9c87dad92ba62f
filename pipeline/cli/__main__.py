"""``python -m pipeline.cli``: same as the ``xray-seg`` command."""

import sys

from pipeline.cli import main

sys.exit(main())
