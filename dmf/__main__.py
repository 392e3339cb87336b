"""``python -m dmf`` is the ``dmf`` command."""

import sys

from dmf.cli import main

if __name__ == "__main__":  # a LocalCluster's worker processes re-import __main__
    sys.exit(main())
