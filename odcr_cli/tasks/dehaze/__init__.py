"""``odcr dehaze``: the plan of inputs and outputs, its options, photos (dehazing) and videos."""
