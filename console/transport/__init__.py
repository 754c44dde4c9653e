"""Reaching nodes over SSH: connections, agent deployment, streams and fan-out commands."""
