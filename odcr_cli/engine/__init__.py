"""The dehazing engine: the ``Dehazer`` API, its backends (PyTorch, ONNX Runtime), padding and
tiling, and the readout of a network's named outputs. Torch is imported only by the PyTorch
backend, so the ONNX path stays torch-free."""
