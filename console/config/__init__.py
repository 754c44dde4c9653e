"""Loading and checking cluster.toml."""

from tidectl.console.config.loader import ConfigError, load_config, parse_config

__all__ = ["ConfigError", "load_config", "parse_config"]
