"""Defaults of the simulated cluster, apart from the server so the CLI can name them cheaply.

Importing the server pulls in asyncssh (a quarter of a second); argparse help and the
console's fault menu need only these.
"""

DEFAULT_BASE_PORT = 24001
DEFAULT_USER = "tidectl"
DEFAULT_ADDRESS = "127.0.0.1"
#: Nodes one worker process takes before ``serve`` starts another (up to one per core).
NODES_PER_WORKER = 500
