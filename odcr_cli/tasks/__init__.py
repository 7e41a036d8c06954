"""The tasks behind the commands (``train``, ``dehaze``, ``evaluate``, ``export``, ``synth``): each
takes plain options and callbacks, never Typer or rich, and returns a report."""
