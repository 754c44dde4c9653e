"""The agent's probes: one module each, one section of the record each."""
