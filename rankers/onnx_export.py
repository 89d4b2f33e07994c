"""Exporting a sentence-transformers model to ONNX, and quantizing it with onnxruntime.

Known traps, each handled here: ``torch.onnx.export`` needs ``onnxscript`` installed; with
transformers 5 the model is called through a small wrapper that passes its inputs as keywords;
attention is switched to the eager implementation for the export (SDPA's traced graph is slower
under onnxruntime); the model is loaded fresh from disk for the export and never shared with a
torch ranker, whose copy stays untouched as the reference.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from harness.errors import RankerUnavailable

from .base import require


def _load(model_dir: Path, kind: str):
    from harness.net import is_offline

    is_offline()
    require("sentence_transformers", "dense", "exporting to ONNX")
    if kind == "cross-encoder":
        from sentence_transformers import CrossEncoder

        from .crossencoder import _own_modules_only

        return CrossEncoder(str(model_dir), device="cpu", local_files_only=True,
                            trust_remote_code=_own_modules_only(model_dir))
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(model_dir), device="cpu", local_files_only=True)


def export_model(model_dir: Path, kind: str, out: Path, opset: int = 17,
                 log: Callable[[str], None] = print) -> dict:
    """Write ``out`` (an fp32 ONNX graph: token ids in, one score per pair or one embedding per
    text out) and the tokenizer beside it (``tokenizer/``). Returns what the ranker needs to know."""
    torch = require("torch", "dense", "exporting to ONNX")
    require("onnx", "onnx", "exporting to ONNX")
    try:
        import onnxscript  # noqa: F401  (torch.onnx needs it, even for the TorchScript exporter's helpers)
    except ImportError:
        raise RankerUnavailable("exporting to ONNX needs onnxscript: pip install 'rankbench[onnx]'") from None

    t0 = time.perf_counter()
    model = _load(model_dir, kind)
    model.eval()
    encoder = model[0]
    auto = getattr(encoder, "auto_model", None) or getattr(encoder, "model", None)
    if auto is not None and hasattr(auto, "set_attn_implementation"):
        try:
            auto.set_attn_implementation("eager")
        except (ValueError, ImportError):
            pass      # a model without an eager path keeps its own
    tokenizer = model.tokenizer
    if kind == "cross-encoder":
        from .crossencoder import model_max_length

        max_length = model_max_length(model)
        sample = tokenizer(["what is a cross-encoder"], ["a model that reads the query and the document together"],
                           return_tensors="pt")
        output = "scores"
    else:
        max_length = int(model.max_seq_length or 512)
        sample = tokenizer(["what is a bi-encoder"], return_tensors="pt")
        output = "sentence_embedding"
    inputs = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in sample]

    class Wrapper(torch.nn.Module):
        """Positional ONNX inputs -> the keyword features sentence-transformers' modules read."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            feats = {"input_ids": input_ids, "attention_mask": attention_mask}
            if token_type_ids is not None:
                feats["token_type_ids"] = token_type_ids
            return self.inner(feats)[output]

    kwargs = {k: sample[k] for k in inputs}
    axes = {k: {0: "batch", 1: "sequence"} for k in inputs}
    axes[output] = {0: "batch"}
    import warnings

    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(Wrapper(model), (), str(out), kwargs=kwargs, input_names=inputs, output_names=[output],
                          dynamic_axes=axes, opset_version=opset, dynamo=False)
    tok_dir = out.parent / "tokenizer"
    tokenizer.save_pretrained(str(tok_dir))
    params = sum(p.numel() for p in model.parameters())
    dim = None
    if kind == "bi-encoder":
        dim = int((getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension)())
    del model
    log(f"exported {kind} {model_dir} to ONNX (opset {opset}) in {time.perf_counter() - t0:.1f} s")
    return {"kind": kind, "inputs": inputs, "output": output, "max_length": max_length, "params": params,
            "dim": dim, "tokenizer_dir": tok_dir.name, "opset": opset}


def float_nodes(model_path: Path, groups) -> list[str]:
    """Names of the nodes in the named groups: "ffn-output" = each layer's feed-forward output
    projection (the MatMul of ``.../output/dense``, not the attention's)."""
    import onnx

    names = []
    if "ffn-output" in groups:
        graph = onnx.load(str(model_path), load_external_data=False).graph
        names += [n.name for n in graph.node if n.op_type == "MatMul" and "/output/dense" in n.name
                  and "attention" not in n.name]
    return names


def quantize_embedding_rows(model) -> list[str]:
    """Store each embedding table (a float initializer of rank 2 read by a Gather) as int8 with one
    scale per row, in place: ``Gather(table, ids)`` becomes ``Cast(Gather(table_int8, ids)) *
    Gather(scales, ids)``. onnxruntime's quantizer gives a Gather table one scale for all its rows,
    so a few rows with large values coarsen every token's embedding; per row, each token keeps its
    own range (DL 2020 with the 2-layer student: 99.2% of torch's nDCG@10 kept, against 98.1% per
    tensor, at the same size and speed). Returns the tables it rewrote."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    done: dict[str, tuple[str, str]] = {}      # table -> (its int8 copy, its row scales)
    nodes = []
    for node in graph.node:
        name = node.input[0] if node.op_type == "Gather" else ""
        axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
        if name not in done and name in inits and axis == 0:
            w = numpy_helper.to_array(inits[name])
            if w.dtype == np.float32 and w.ndim == 2:
                scale = np.abs(w).max(axis=1, keepdims=True) / 127.0
                scale[scale == 0] = 1.0
                q = np.clip(np.rint(w / scale), -127, 127).astype(np.int8)
                graph.initializer.remove(inits[name])
                done[name] = (f"{name}.int8", f"{name}.row_scale")
                graph.initializer.extend([numpy_helper.from_array(q, done[name][0]),
                                          numpy_helper.from_array(scale.astype(np.float32), done[name][1])])
        if name not in done or axis != 0:
            nodes.append(node)
            continue
        (table, scales), ids, out = done[name], node.input[1], node.output[0]
        nodes += [helper.make_node("Gather", [table, ids], [f"{out}.int8"], name=f"{node.name}.int8", axis=0),
                  helper.make_node("Cast", [f"{out}.int8"], [f"{out}.cast"], name=f"{node.name}.cast", to=TensorProto.FLOAT),
                  helper.make_node("Gather", [scales, ids], [f"{out}.scale"], name=f"{node.name}.scale", axis=0),
                  helper.make_node("Mul", [f"{out}.cast", f"{out}.scale"], [out], name=f"{node.name}.dequantize")]
    del graph.node[:]
    graph.node.extend(nodes)
    return list(done)


def quantize(fp32: Path, out: Path, params, calibration: list[dict] | None = None, keep_float=(),
             log: Callable[[str], None] = print) -> None:
    """Write the variant ``params.variant`` of the fp32 graph ``fp32`` to ``out``."""
    variant = params.variant
    t0 = time.perf_counter()
    fp32_bytes = fp32.stat().st_size
    if variant == "fp32":
        fp32.replace(out)        # the export itself: one file, no copy
        return
    import onnx

    if variant == "fp16":
        from onnxruntime.transformers.float16 import convert_float_to_float16

        model = convert_float_to_float16(onnx.load(str(fp32)), keep_io_types=True)
        onnx.save(model, str(out))
        log(f"converted to fp16 in {time.perf_counter() - t0:.1f} s")
        return
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static

    ops = ["MatMul"] + (["Gather"] if params.embeddings == "per-tensor" else [])
    exclude = float_nodes(fp32, keep_float) or None
    if params.embeddings == "per-row":
        rows = fp32.with_suffix(".rows.onnx")
        model = onnx.load(str(fp32))
        quantize_embedding_rows(model)
        onnx.save(model, str(rows))
        fp32 = rows
    if keep_float and not exclude:
        raise ValueError(f"keep_float {list(keep_float)}: no such nodes in {fp32.name}")
    # torch's exporter leaves some intermediate types for shape inference to find; where it cannot,
    # the quantizer needs the default (float) named.
    extra = {"DefaultTensorType": onnx.TensorProto.FLOAT}
    if variant == "int8-dynamic":
        quantize_dynamic(str(fp32), str(out), op_types_to_quantize=ops, per_channel=params.per_channel,
                         weight_type=QuantType.QInt8, nodes_to_exclude=exclude, extra_options=extra)
    elif variant == "int8-static":
        from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod

        if not calibration:
            raise ValueError("int8-static needs calibration batches")

        class Reader(CalibrationDataReader):
            def __init__(self, batches):
                self.it = iter(batches)

            def get_next(self):
                return next(self.it, None)

        method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                  "percentile": CalibrationMethod.Percentile}[params.calibrate_method]
        quantize_static(str(fp32), str(out), Reader(calibration), quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=ops, per_channel=params.per_channel,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=method, nodes_to_exclude=exclude, extra_options={**extra, "MatMulConstBOnly": True})
    else:
        raise ValueError(f"unknown variant {variant!r}")
    log(f"quantized to {variant} in {time.perf_counter() - t0:.1f} s "
        f"({fp32_bytes / 1e6:.1f} MB -> {out.stat().st_size / 1e6:.1f} MB)")
    if params.embeddings == "per-row":
        fp32.unlink()
