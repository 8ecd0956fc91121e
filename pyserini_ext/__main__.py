"""``python -m pyserini_ext ...`` is ``pyserini-ext ...``."""

import sys

from pyserini_ext.cli import main

sys.exit(main())
