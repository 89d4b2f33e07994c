"""Score heads for cross-encoders built from a bi-encoder checkpoint.

A cross-encoder normally puts a new linear layer on the [CLS] vector of the joint
(query, document) encoding. Started from a bi-encoder such as all-MiniLM-L6-v2 that head knows
nothing, and on two CPU cores the few thousand training steps affordable here never teach it
relevance (TRAINING.md: 0.13-0.23 nDCG@10 on DL20, below BM25).

``SegmentCosine`` reads the same joint encoding but scores it the way the checkpoint was
trained to: the mean of the query segment's token vectors against the mean of the document
segment's (``token_type_ids`` 0 and 1), cosine, times a learned scale. Query and document tokens
still attend to each other in every layer, so it is a cross-encoder, and training teaches that
interaction; yet the untrained model already ranks like a (degraded) bi-encoder: nDCG@10 0.508 on
DL19 reranking BM25's top 100, against 0.16 for a random head. It is a sentence-transformers
module: the model saves and loads as a standard ``CrossEncoder`` folder.

Tokenizers without segment ids (MPNet's and RoBERTa's, as in all-mpnet-base-v2) mark the pair with
separator tokens instead: given ``sep_token_id``, the query segment is everything up to the first
separator and the document segment the rest, which is exactly BERT's split.
"""
from __future__ import annotations

import torch
from sentence_transformers.base.modules import Module
from torch import nn


class SegmentCosine(Module):
    config_keys = ["init_scale", "sep_token_id"]

    def __init__(self, init_scale: float = 20.0, sep_token_id: int | None = None):
        super().__init__()
        if init_scale <= 0:
            raise ValueError(f"init_scale must be positive, not {init_scale}")
        self.init_scale = float(init_scale)
        self.sep_token_id = None if sep_token_id is None else int(sep_token_id)
        self.log_scale = nn.Parameter(torch.tensor(self.init_scale).log())

    def forward(self, features: dict, **kwargs) -> dict:
        h = features["token_embeddings"]
        mask = features["attention_mask"].bool()
        segment = features.get("token_type_ids")
        if segment is None:
            if self.sep_token_id is None:
                raise ValueError("SegmentCosine needs token_type_ids or a sep_token_id to find the two segments")
            seps = (features["input_ids"] == self.sep_token_id).long().cumsum(1)
            # up to and including the first separator: the query; after it: the document
            segment = ((seps - (features["input_ids"] == self.sep_token_id).long()) >= 1).long()
        q = (mask & (segment == 0)).unsqueeze(-1).to(h.dtype)
        d = (mask & (segment == 1)).unsqueeze(-1).to(h.dtype)
        qv = (h * q).sum(1) / q.sum(1).clamp(min=1)
        dv = (h * d).sum(1) / d.sum(1).clamp(min=1)
        cos = nn.functional.cosine_similarity(qv, dv, dim=-1)
        features["scores"] = (self.log_scale.exp() * cos).unsqueeze(1)
        return features

    def save(self, output_path: str, *args, safe_serialization: bool = True, **kwargs) -> None:
        self.save_config(output_path)
        self.save_torch_weights(output_path, safe_serialization=safe_serialization)

    @classmethod
    def load(cls, model_name_or_path: str, subfolder: str = "", **kwargs):
        keys = {k: kwargs[k] for k in ("token", "cache_folder", "revision", "local_files_only") if k in kwargs}
        config = cls.load_config(model_name_or_path, subfolder=subfolder, **keys)
        module = cls(**config)
        cls.load_torch_weights(model_name_or_path, subfolder=subfolder, model=module, **keys)
        return module
