"""Command line: `imagen-video <command> ...`; one module per command."""
