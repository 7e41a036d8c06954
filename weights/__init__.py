"""Bundled generator weights of odcr (installed as the package ``odcr_cli.weights``)."""
