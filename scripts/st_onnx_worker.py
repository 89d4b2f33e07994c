"""sentence-transformers' own ONNX path, run inside its own virtual environment (optimum-onnx pins
transformers < 4.58, which rankbench's environment cannot take). Driven by st_onnx_side_by_side.py
over stdin/stdout, one command at a time, so only one side computes at any moment.

    python st_onnx_worker.py MODEL_DIR ST_DIR WORK_DIR THREADS

MODEL_DIR is a local sentence-transformers folder (the hub is never asked: this runs offline).
Builds, once, in ST_DIR: the ONNX export (``backend="onnx"``) and its dynamic INT8
copy (``export_dynamic_quantized_onnx_model(model, "avx512_vnni")``). Then reads lines: ``NAME``
(one of torch, onnx, onnx-int8) encodes WORK_DIR/texts.json with that variant into
WORK_DIR/NAME.npy and answers ``{"name", "seconds"}``; ``quit`` ends.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"        # local folders only
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

QUANTIZATION = "avx512_vnni"
INT8_FILE = f"onnx/model_qint8_{QUANTIZATION}.onnx"


def answer(obj) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main(model_dir: str, st_model: str, work: str, threads: int) -> None:
    import numpy as np
    import onnxruntime as ort
    import torch
    from sentence_transformers import SentenceTransformer, __version__
    from sentence_transformers.backend import export_dynamic_quantized_onnx_model

    if not (Path(model_dir) / "modules.json").is_file():
        sys.exit(f"st_onnx_worker: {model_dir} is not a sentence-transformers model folder (no modules.json)")
    torch.set_num_threads(threads)
    work_dir, st_dir = Path(work), Path(st_model)
    built = {}
    if not (st_dir / INT8_FILE).exists():
        t0 = time.perf_counter()
        exported = SentenceTransformer(model_dir, backend="onnx", device="cpu", local_files_only=True)
        exported.save_pretrained(str(st_dir))
        built["export_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        export_dynamic_quantized_onnx_model(exported, QUANTIZATION, str(st_dir))
        built["quantize_s"] = time.perf_counter() - t0
        del exported

    def options():
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        return so

    models = {
        "torch": SentenceTransformer(model_dir, device="cpu", local_files_only=True),
        "onnx": SentenceTransformer(str(st_dir), backend="onnx", device="cpu", local_files_only=True,
                                    model_kwargs={"file_name": "onnx/model.onnx", "provider": "CPUExecutionProvider",
                                                  "session_options": options()}),
        "onnx-int8": SentenceTransformer(str(st_dir), backend="onnx", device="cpu", local_files_only=True,
                                         model_kwargs={"file_name": INT8_FILE, "provider": "CPUExecutionProvider",
                                                       "session_options": options()}),
    }
    texts = json.loads((work_dir / "texts.json").read_text())
    for model in models.values():        # warm-up, not timed
        model.encode(texts[:64], batch_size=32)
    import importlib.metadata as md

    answer({"ready": True, "built": built,
            "bytes": {"onnx": (st_dir / "onnx/model.onnx").stat().st_size, "onnx-int8": (st_dir / INT8_FILE).stat().st_size},
            "versions": {p: md.version(p) for p in ("sentence-transformers", "optimum", "optimum-onnx", "onnxruntime",
                                                     "transformers", "torch")},
            "sentence_transformers": __version__})
    for line in sys.stdin:
        name = line.strip()
        if name == "quit":
            break
        if name not in models:
            answer({"error": f"unknown variant {name!r}; known: {', '.join(models)}"})
            continue
        t0 = time.perf_counter()
        emb = models[name].encode(texts, batch_size=32, convert_to_numpy=True, normalize_embeddings=True)
        seconds = time.perf_counter() - t0
        np.save(work_dir / f"{name}.npy", emb.astype(np.float32))
        answer({"name": name, "seconds": seconds})


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
