"""``odcr evaluate``: pairing hazy and ground-truth files, the scores (evaluation), the report and
its HTML page."""
