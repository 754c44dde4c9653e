"""Collection in worker processes: each owns a share of the nodes' SSH links.

At a thousand nodes a second, the console's one process spends about half a core receiving,
decoding and judging agent lines (docs/DECISIONS.md, "the collector's CPU"). With
``[collector] workers = N``, N worker processes each run the ordinary ``Collector`` and
``Fleet`` over their share of the nodes — the same links, decoding, rates, history and
health rules — and send the console a digest of each node that changed, about twenty times a
second: its link, health, findings and events, the history rows it added, its rates, and the
agent's latest line, which the console decodes only when a view reads the sample.

The console's fleet (``derived_elsewhere``) then only records what the workers derived; the
one thing no worker can judge alone — the IB rate most of a node's peers run at, for
``ib.rate_degraded`` — the console adds up from every worker's ports and sends back.

Frames between the processes are length-prefixed pickles: both ends are this package, run by
the same user from the same install, and nothing is persisted (the store never pickles).
"""
