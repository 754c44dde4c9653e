"""``python3 -m tidectl.agents``: the agent's command line."""

import sys

from tidectl.agents.cli import main

if __name__ == "__main__":
    sys.exit(main())
