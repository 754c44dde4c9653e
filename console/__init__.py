"""The tidectl control plane: config, transport, fleet, health, lifecycle, CLI.

This core never imports Textual; only ``tidectl.console.tui`` does.
"""
