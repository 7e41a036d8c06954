"""The ``odcr`` command line: argument parsing and reporting only (``odcr_cli.cli.app``)."""

from odcr_cli.cli.app import app, main

__all__ = ("app", "main")
