"""float16 passes over an exported ONNX model (onnx helpers only, no extra dependency).

fp16 model (:func:`convert_to_fp16`, ``odcr export --onnx --fp16``)
    A small onnxconverter-common-style pass: weights and activations become float16, but
    InstanceNormalization, reductions and other range-sensitive ops (:data:`FP32_OPS`) stay
    float32 with Cast nodes around them, and the model's input and output stay float32.

Weights stored in fp16 (:func:`store_weights_fp16`: an fp32 model, half the file)
    Weights that came from fp16 storage (``ship_weights.py --fp16``) are exactly representable in
    float16, so they are kept as float16 initializers, each followed by a Cast to float32: the
    graph computes in float32 with bit-identical weights (onnxruntime folds the casts when the
    session is built) and the file is half the size. Weights that are not fp16-exact stay float32.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

import numpy as np

if TYPE_CHECKING:
    import onnx

# ops kept in float32 by the fp16 conversion (onnxruntime#10079: InstanceNorm in fp16 is wrong)
FP32_OPS = frozenset({
    "InstanceNormalization", "BatchNormalization", "LayerNormalization", "GroupNormalization",
    "ReduceMean", "ReduceSum", "ReduceSumSquare", "ReduceL1", "ReduceL2", "ReduceLogSum",
    "ReduceLogSumExp", "ReduceProd", "Softmax", "LogSoftmax", "Exp", "Log", "Pow", "Sqrt",
    "Reciprocal", "Range", "RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
})
_SHAPE_ONLY_OPS = frozenset({"Shape", "Size"})
_FLOAT_PARAM_INPUTS = {"Resize": {1, 2}, "Upsample": {1}}  # inputs that must stay float32
FP16_MAX = 65504.0


def to_half(arr: np.ndarray) -> np.ndarray:
    """Any float array -> float16 of the same shape, clipped to float16's finite range."""
    return np.clip(arr, -FP16_MAX, FP16_MAX).astype(np.float16)


def _element_types(graph: "onnx.GraphProto") -> dict[str, int]:
    """Tensor name -> its ONNX element type in the fp32 graph (after shape inference)."""
    types: dict[str, int] = {}
    for vi in list(graph.input) + list(graph.value_info) + list(graph.output):
        types[vi.name] = vi.type.tensor_type.elem_type
    for t in graph.initializer:
        types[t.name] = t.data_type
    for n in graph.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    types[n.output[0]] = a.t.data_type
    return types


class _Fp16Rewriter:
    """One conversion's state: the rewritten node list, the float16 initializers it adds and the
    element type every tensor has so far in the new graph."""

    def __init__(self, graph: "onnx.GraphProto", keep_fp32_ops: frozenset[str]) -> None:
        from onnx import TensorProto

        self.FLOAT, self.HALF, self.INT64 = TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.INT64
        self.keep_fp32_ops = keep_fp32_ops
        self.orig = _element_types(graph)
        self.inits = {t.name: t for t in graph.initializer}
        self.cur: dict[str, int] = {vi.name: vi.type.tensor_type.elem_type for vi in graph.input}
        self.cur.update({name: t.data_type for name, t in self.inits.items()})
        self.nodes: list = []
        self.new_inits: dict[str, object] = {}
        self.casts: dict[tuple[str, int], str] = {}

    def get_as(self, name: str, dtype: int) -> str:
        """The name of ``name`` as ``dtype``: itself, a float16 copy of an initializer, or the
        output of a (shared) Cast node added before the node being rewritten."""
        from onnx import helper, numpy_helper

        cur, orig = self.cur, self.orig
        if not name or cur.get(name, orig.get(name)) not in (self.FLOAT, self.HALF) or cur.get(name) == dtype:
            return name
        key = (name, dtype)
        if key in self.casts:
            return self.casts[key]
        if name in self.inits and dtype == self.HALF:
            new_name = f"{name}__fp16"
            half = to_half(numpy_helper.to_array(self.inits[name]))
            self.new_inits[new_name] = numpy_helper.from_array(half, new_name)
        else:
            new_name = f"{name}__as_{'fp16' if dtype == self.HALF else 'fp32'}"
            self.nodes.append(helper.make_node("Cast", [name], [new_name], to=dtype,
                                               name=f"cast_{len(self.casts)}_{new_name}"))
        cur[new_name] = dtype
        self.casts[key] = new_name
        return new_name

    def _halved(self, names: Iterable[str]) -> None:
        """Outputs that were float32 are float16 now; others keep their type."""
        for o in names:
            self.cur[o] = self.HALF if self.orig.get(o) == self.FLOAT else self.orig.get(o, 0)

    def rewrite(self, node: "onnx.NodeProto") -> None:
        """Rewrite ``node`` in place for the fp16 graph and append it (after its input casts)."""
        from onnx import numpy_helper

        op = node.op_type
        if op in self.keep_fp32_ops:
            node.input[:] = [self.get_as(i, self.FLOAT) for i in node.input]
            for o in node.output:
                self.cur[o] = self.orig.get(o, self.FLOAT)
        elif op in ("Constant", "ConstantOfShape"):
            for a in node.attribute:
                if a.name == "value" and a.t.data_type == self.FLOAT:
                    a.t.CopyFrom(numpy_helper.from_array(to_half(numpy_helper.to_array(a.t)), a.t.name))
            self._halved(node.output)
        elif op == "Cast":
            for a in node.attribute:
                if a.name == "to" and a.i == self.FLOAT:
                    a.i = self.HALF
            self._halved(node.output)
        elif op in _SHAPE_ONLY_OPS:
            for o in node.output:
                self.cur[o] = self.orig.get(o, self.INT64)
        else:
            keep = _FLOAT_PARAM_INPUTS.get(op, set())
            # a float parameter (Resize's scales) made by a Constant was halved with it: cast it back
            node.input[:] = [self.get_as(i, self.FLOAT if k in keep else self.HALF) for k, i in enumerate(node.input)]
            self._halved(node.output)
        self.nodes.append(node)

    def cast_outputs_back(self, outputs: Iterable["onnx.ValueInfoProto"]) -> None:
        """Float32 graph outputs computed in float16: rename the fp16 tensor and cast it back."""
        from onnx import helper

        for out in outputs:
            if out.type.tensor_type.elem_type == self.FLOAT and self.cur.get(out.name) == self.HALF:
                inner = f"{out.name}__fp16"
                for n in self.nodes:
                    n.input[:] = [inner if i == out.name else i for i in n.input]
                    n.output[:] = [inner if o == out.name else o for o in n.output]
                self.nodes.append(helper.make_node("Cast", [inner], [out.name], to=self.FLOAT,
                                                   name=f"cast_out_{out.name}"))

    def used_initializers(self, graph: "onnx.GraphProto") -> list:
        """The original initializers still read, then the float16 copies that are read."""
        used = {i for n in self.nodes for i in n.input}
        return [t for t in graph.initializer if t.name in used] + \
            [t for n, t in self.new_inits.items() if n in used]


def convert_to_fp16(model: "onnx.ModelProto", keep_fp32_ops: frozenset[str] = FP32_OPS) -> "onnx.ModelProto":
    """Return a float16 copy of ``model`` with ``keep_fp32_ops`` and the graph I/O in float32."""
    import onnx

    model = onnx.shape_inference.infer_shapes(model)
    g = model.graph
    rewriter = _Fp16Rewriter(g, keep_fp32_ops)
    for node in g.node:
        rewriter.rewrite(node)
    rewriter.cast_outputs_back(g.output)
    initializers = rewriter.used_initializers(g)
    del g.node[:]
    g.node.extend(rewriter.nodes)
    del g.initializer[:]
    g.initializer.extend(initializers)
    del g.value_info[:]  # stale float32 types: inferred again below
    return onnx.shape_inference.infer_shapes(model)


def store_weights_fp16(model: "onnx.ModelProto", min_elements: int = 64) -> tuple["onnx.ModelProto", int]:
    """If float16 represents every float32 initializer (of ``min_elements`` or more) exactly,
    store them as float16, each followed by a Cast to float32 (see the module docstring); else
    leave the model alone. Returns (model, number of initializers converted)."""
    from onnx import TensorProto, helper, numpy_helper

    g = model.graph
    arrays = {t.name: numpy_helper.to_array(t) for t in g.initializer
              if t.data_type == TensorProto.FLOAT and np.prod(t.dims) >= min_elements}
    if not arrays or not all(np.array_equal(a.astype(np.float16).astype(np.float32), a) for a in arrays.values()):
        return model, 0
    kept, casts, converted = [], [], 0
    for t in g.initializer:
        arr = arrays.get(t.name)
        if arr is None:
            kept.append(t)
            continue
        half = f"{t.name}__fp16_storage"
        kept.append(numpy_helper.from_array(arr.astype(np.float16), half))
        casts.append(helper.make_node("Cast", [half], [t.name], to=TensorProto.FLOAT, name=f"{half}_cast"))
        converted += 1
    if converted:
        nodes = casts + list(g.node)
        del g.node[:]
        g.node.extend(nodes)
        del g.initializer[:]
        g.initializer.extend(kept)
    return model, converted
