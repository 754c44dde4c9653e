"""The policy loop: the automation that keeps cloud capacity and spend honest ([cost])."""
