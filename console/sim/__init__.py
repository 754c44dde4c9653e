"""The simulated cluster: many simulated nodes behind real SSH on 127.0.0.1.

``tidectl sim serve`` runs one asyncssh listener per node, each with its own host key, and
answers the commands a console sends a real node (the Python probe, SFTP deploys, the agent's
``stream``, fan-out commands) with the real agent code over the ``sim`` probe. It writes a
ready ``cluster.toml``, ``known_hosts`` and client key, so the console connects to it exactly
as it connects to a real cluster. ``tidectl sim inject`` and ``tidectl sim clear`` change the
nodes' faults while it runs.

* ``files``: what the server keeps in its folder (keys, config, known_hosts, fault file).
* ``shell``: the few commands a simulated node understands.
* ``server``: the listeners, sessions and the agent loop.
* ``cli``: ``tidectl sim serve|inject|clear``.
"""
