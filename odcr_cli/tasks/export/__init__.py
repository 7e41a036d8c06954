"""``odcr export``: the ONNX export and its checks (export), and the ONNX graph rewriters it uses
(onnx_fp16, onnx_int8)."""
