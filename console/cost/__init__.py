"""Cost: what the cluster spends, against what it may ([cost])."""
