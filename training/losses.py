"""Knowledge distillation: a student learns a teacher's scores over each training query's
candidates (the positive first, then mined negatives).

One objective, three weighted terms (weights from the recipe's ``distill_weights``):

- ``margin_mse``: MSE between the student's and the teacher's score margins, positive minus each
  negative (Hofstätter et al. 2020, cross-architecture distillation);
- ``listwise``: KL divergence from the teacher's softmax over the query's candidates to the
  student's, at a temperature (T² keeps gradients comparable across temperatures);
- ``contrastive``: cross-entropy picking the judged positive among the query's candidates and
  other queries' positives in the batch (in-batch negatives).

sentence-transformers has each piece for one model type; a weighted sum over one forward pass
is not in it, so the two small loss modules below score the candidates once and share the
objective.
"""
from __future__ import annotations

from typing import Mapping

import torch



def distill_objective(student, teacher, extra=None, weights: Mapping[str, float] | None = None,
                      temperature: float = 1.0):
    """student, teacher: [batch, group] scores, the positive in column 0. extra: [batch, m]
    student scores of in-batch negatives (for the contrastive term), or None.
    Returns (total loss, {term: value})."""
    import torch.nn.functional as F

    weights = dict(weights or {"margin_mse": 1.0})
    teacher = teacher.to(student.dtype)
    parts = {}
    if weights.get("margin_mse", 0) > 0:
        parts["margin_mse"] = F.mse_loss(student[:, :1] - student[:, 1:], teacher[:, :1] - teacher[:, 1:])
    if weights.get("listwise", 0) > 0:
        t = temperature
        parts["listwise"] = F.kl_div(F.log_softmax(student / t, dim=1), F.log_softmax(teacher / t, dim=1),
                                     reduction="batchmean", log_target=True) * t * t
    if weights.get("contrastive", 0) > 0:
        logits = student if extra is None else torch.cat([student, extra], dim=1)
        parts["contrastive"] = F.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long,
                                                                   device=logits.device))
    total = sum(weights[k] * v for k, v in parts.items())
    return total, {k: float(v.detach()) for k, v in parts.items()}


def _labels(labels, batch: int, group: int):
    if isinstance(labels, list):
        labels = torch.stack(labels)      # one tensor per example (the collator's list labels)
    if labels.shape != (batch, group):
        raise ValueError(f"distillation labels must be the teacher's {group} scores per example "
                         f"(positive first), found shape {tuple(labels.shape)} for {batch} examples")
    return labels


class _DistillLoss(torch.nn.Module):
    """What both students' losses share: the model, the weights, and the objective on their scores."""

    def __init__(self, model, weights: Mapping[str, float], temperature: float):
        super().__init__()
        self.model = model
        self.weights = dict(weights)
        self.temperature = temperature
        self.last: dict[str, float] = {}      # the terms of the last batch

    def objective(self, student, labels, extra):
        b, g = student.shape
        loss, self.last = distill_objective(student, _labels(labels, b, g).to(student.device), extra,
                                            self.weights, self.temperature)
        return loss

    def get_config_dict(self):
        return {"weights": self.weights, "temperature": self.temperature}


class CrossEncoderDistillLoss(_DistillLoss):
    """For sentence-transformers' CrossEncoderTrainer: inputs are the columns (query, positive,
    negative_1..n), labels the teacher's scores in the same order. ``in_batch``: how many other
    examples' positives each query is also scored against, for the contrastive term."""

    def __init__(self, model, weights: Mapping[str, float], temperature: float = 1.0, in_batch: int = 1):
        super().__init__(model, weights, temperature)
        self.in_batch = in_batch

    def forward(self, inputs, labels, prompt=None, task=None):
        from sentence_transformers.util import batch_to_device

        queries, docs = inputs[0], inputs[1:]
        b, g = len(queries), len(docs)
        pairs = [(q, col[i]) for col in docs for i, q in enumerate(queries)]
        m = min(self.in_batch, b - 1) if self.weights.get("contrastive", 0) > 0 else 0
        pairs += [(queries[i], docs[0][(i + j) % b]) for j in range(1, m + 1) for i in range(b)]
        feats = batch_to_device(self.model.preprocess(pairs), self.model.device)
        scores = self.model(feats)["scores"].view(-1)
        student = scores[: b * g].view(g, b).T
        extra = scores[b * g:].view(m, b).T if m else None
        return self.objective(student, labels, extra)

    def get_config_dict(self):
        return {**super().get_config_dict(), "in_batch": self.in_batch}


class BiEncoderDistillLoss(_DistillLoss):
    """For sentence-transformers' SentenceTransformerTrainer: the same objective for a bi-encoder.
    Student scores are cosine similarities times ``scale`` (the teacher's are z-scored per query, so
    margins of a few units); every other example's positive is an in-batch negative, at no cost."""

    def __init__(self, model, weights: Mapping[str, float], temperature: float = 1.0, scale: float = 20.0):
        super().__init__(model, weights, temperature)
        self.scale = scale

    def forward(self, sentence_features, labels):
        import torch.nn.functional as F
        from sentence_transformers.base.losses.merged_forward import embed_columns

        reps = [F.normalize(r, dim=-1) for r in embed_columns(self.model, sentence_features)]
        q, docs = reps[0], torch.stack(reps[1:], dim=1)             # [b, d], [b, g, d]
        b = docs.shape[0]
        student = self.scale * torch.einsum("bd,bgd->bg", q, docs)
        extra = None
        if self.weights.get("contrastive", 0) > 0 and b > 1:
            others = self.scale * q @ reps[1].T                     # query i against every positive j
            mask = ~torch.eye(b, dtype=torch.bool, device=others.device)
            extra = others[mask].view(b, b - 1)
        return self.objective(student, labels, extra)

    def get_config_dict(self):
        return {**super().get_config_dict(), "scale": self.scale}
