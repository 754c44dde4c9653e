"""``python3 -m tidectl.console``: the same as the ``tidectl`` command."""

import sys

from tidectl.console.cli import main

if __name__ == "__main__":
    sys.exit(main())
