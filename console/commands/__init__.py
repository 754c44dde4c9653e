"""The tidectl subcommands, one module each: argument parsing lives with the command."""
