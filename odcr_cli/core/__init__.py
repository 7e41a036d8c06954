"""Core of odcr: networks, losses, the Stiefel optimiser and method definitions.

Nothing here does file I/O or imports the CLI.
"""
