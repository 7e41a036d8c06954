"""``odcr train``: the loop and its step (training), the settings, the training state, the run
folder, the data and the report."""
