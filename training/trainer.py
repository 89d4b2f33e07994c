"""Training cross-encoders with sentence-transformers' ``CrossEncoderTrainer``.

The recipes (``training.recipes``) choose the data; this module builds the model (a pretrained
encoder, optionally a subset of its layers, with a score head), trains it with the recipe's
loss, warm-up and linear decay, gradient accumulation, fp16 on a GPU, a fixed seed, dev
evaluation and checkpoints every ``eval_steps`` (the best one is kept), resumes from the last
checkpoint of an interrupted run, and saves a standard sentence-transformers folder.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from harness.recipe_spec import RecipeSpec

    from .data import TrainingData


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _device_name() -> str:
    import torch

    if torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name(0)}"
    return f"cpu: {torch.get_num_threads()} threads"


def _keep_layers(auto_model, layers: tuple[int, ...], where: str) -> None:
    """Keep only the given encoder layers (BERT/MPNet-style ``encoder.layer`` lists)."""
    import torch

    encoder = getattr(auto_model, "encoder", None) or getattr(getattr(auto_model, "base_model", None), "encoder", None)
    blocks = getattr(encoder, "layer", None)
    if blocks is None:
        raise ValueError(f"{where}: layers = {list(layers)}: cannot find encoder.layer in {type(auto_model).__name__}")
    n = len(blocks)
    bad = [i for i in layers if not 0 <= i < n]
    if bad or len(set(layers)) != len(layers):
        raise ValueError(f"{where}: layers = {list(layers)} must be distinct indices in 0..{n - 1}")
    encoder.layer = torch.nn.ModuleList([blocks[i] for i in layers])
    auto_model.config.num_hidden_layers = len(layers)


def build_cross_encoder(spec: "RecipeSpec"):
    """The untrained model of a recipe: its starting point."""
    import torch
    from sentence_transformers import CrossEncoder
    from sentence_transformers.base.modules import Transformer

    from rankers._models import resolve_model
    from rankers.heads import SegmentCosine

    torch.manual_seed(spec.seed)
    where = f"[recipes.{spec.name}]"
    init = str(resolve_model(spec.init).path)
    if spec.head == "segment-cosine":
        transformer = Transformer(init, transformer_task="feature-extraction", max_seq_length=spec.max_length,
                                  config_kwargs={"num_labels": 1})
        typed = "token_type_ids" in transformer.tokenizer.model_input_names
        head = SegmentCosine(sep_token_id=None if typed else transformer.tokenizer.sep_token_id)
        model = CrossEncoder(modules=[transformer, head], device=_device())
    else:
        model = CrossEncoder(init, num_labels=1, max_length=spec.max_length, device=_device(),
                             local_files_only=True)
    if spec.layers:
        _keep_layers(model[0].auto_model, spec.layers, where)
    if spec.lora:
        from peft import LoraConfig, get_peft_model

        # a PeftModel, merged back into plain weights before saving (see train_model): the saved
        # folder is a complete model, not an adapter that would load onto the full-depth base
        model[0].auto_model = get_peft_model(model[0].auto_model, LoraConfig(
            r=spec.lora_r, lora_alpha=2 * spec.lora_r, lora_dropout=0.05,
            target_modules=["query", "key", "value", "dense"]))
    return model


def _merge_lora(transformer) -> None:
    """Fold trained LoRA weights into the layers they adapt and drop the adapters: the saved folder is
    then a complete model (an adapter folder would load onto the full-depth base model)."""
    auto = transformer.auto_model
    if hasattr(auto, "merge_and_unload"):          # still a peft.PeftModel
        transformer.auto_model = auto.merge_and_unload()
        return
    from peft.tuners.lora import LoraLayer

    for name, module in list(auto.named_modules()):
        if isinstance(module, LoraLayer):
            module.merge()
            parent, _, child = name.rpartition(".")
            setattr(auto.get_submodule(parent) if parent else auto, child, module.get_base_layer())
    for attr in ("_hf_peft_config_loaded", "peft_config"):
        if hasattr(auto, attr):
            try:
                delattr(auto, attr)
            except AttributeError:
                setattr(auto, attr, False if attr.startswith("_") else {})


def _dataset(spec: "RecipeSpec", data: "TrainingData"):
    from datasets import Dataset   # Hugging Face datasets (rankbench's datasets/ folder is data only)

    ex = data.examples
    if spec.loss in ("mnrl", "distill"):
        cols = {"query": [e.query for e in ex], "positive": [e.positive for e in ex]}
        for i in range(spec.negatives):
            cols[f"negative_{i + 1}"] = [e.negatives[i] for e in ex]
        if spec.loss == "distill":
            if any(e.scores is None for e in ex):
                raise ValueError(f"[recipes.{spec.name}]: distillation needs the teacher's scores on every example")
            cols["label"] = [list(e.scores) for e in ex]
    elif spec.loss == "lambda":
        cols = {"query": [e.query for e in ex], "docs": [[e.positive] + e.negatives for e in ex],
                "labels": [[1.0] + [0.0] * len(e.negatives) for e in ex]}
    else:   # bce: one row per pair
        q, d, y = [], [], []
        for e in ex:
            q += [e.query] * (1 + len(e.negatives))
            d += [e.positive] + e.negatives
            y += [1.0] + [0.0] * len(e.negatives)
        cols = {"query": q, "document": d, "label": y}
    return Dataset.from_dict(cols)


def build_bi_encoder(spec: "RecipeSpec"):
    """A recipe's starting bi-encoder: the pretrained sentence-transformers model (optionally fewer layers)."""
    import torch
    from sentence_transformers import SentenceTransformer

    from rankers._models import resolve_model

    torch.manual_seed(spec.seed)
    model = SentenceTransformer(str(resolve_model(spec.init).path), device=_device(), local_files_only=True)
    model.max_seq_length = spec.max_length
    if spec.layers:
        _keep_layers(model[0].auto_model, spec.layers, f"[recipes.{spec.name}]")
    return model


def _loss(spec: "RecipeSpec", model):
    import torch
    from sentence_transformers.cross_encoder import losses

    if spec.produces == "bi-encoder":
        from .losses import BiEncoderDistillLoss

        return BiEncoderDistillLoss(model, spec.distill_weights, spec.temperature)
    if spec.loss == "mnrl":
        # scores are already scaled logits: no sigmoid, no extra scale
        return losses.MultipleNegativesRankingLoss(model, num_negatives=spec.in_batch_negatives, scale=1.0,
                                                   activation_fn=torch.nn.Identity())
    if spec.loss == "distill":
        from .losses import CrossEncoderDistillLoss

        return CrossEncoderDistillLoss(model, spec.distill_weights, spec.temperature, spec.in_batch_negatives)
    if spec.loss == "lambda":
        return losses.LambdaLoss(model, mini_batch_size=spec.batch_size * (1 + spec.negatives))
    return losses.BinaryCrossEntropyLoss(model)


def train_model(spec: "RecipeSpec", data: "TrainingData", out: Path, workdir: Path,
                log: Callable[[str], None] = print, progress: bool = True) -> dict:
    """Train, keep the best dev checkpoint, save to ``out``; returns the training history. A recipe that
    produces a bi-encoder goes through sentence-transformers' SentenceTransformerTrainer, the same way."""
    from harness.net import is_offline

    is_offline()
    from transformers.trainer_utils import get_last_checkpoint

    bi = spec.produces == "bi-encoder"
    if bi:
        from sentence_transformers import SentenceTransformerTrainer as Trainer
        from sentence_transformers import SentenceTransformerTrainingArguments as Arguments
        from sentence_transformers.sentence_transformer.evaluation import RerankingEvaluator
    else:
        from sentence_transformers.cross_encoder import CrossEncoderTrainer as Trainer
        from sentence_transformers.cross_encoder import CrossEncoderTrainingArguments as Arguments
        from sentence_transformers.cross_encoder.evaluation import CrossEncoderRerankingEvaluator

    model = build_bi_encoder(spec) if bi else build_cross_encoder(spec)
    train = _dataset(spec, data)
    evaluator = None
    if data.dev and bi:
        samples = [{"query": s["query"], "positive": s["positive"],
                    "negative": [d for d in s["documents"] if d not in set(s["positive"])]} for s in data.dev]
        evaluator = RerankingEvaluator(samples, at_k=10, name="dev", batch_size=32, write_csv=False)
    elif data.dev:
        evaluator = CrossEncoderRerankingEvaluator(data.dev, at_k=10, always_rerank_positives=False,
                                                   name="dev", batch_size=32, write_csv=False)
    per_step = spec.batch_size * spec.grad_accum
    steps = spec.max_steps or max(1, int(len(train) * spec.epochs) // per_step)
    eval_steps = spec.eval_steps or steps
    cuda = _device() == "cuda"
    args = Arguments(
        output_dir=str(workdir), per_device_train_batch_size=spec.batch_size,
        gradient_accumulation_steps=spec.grad_accum, learning_rate=spec.lr, max_steps=steps,
        warmup_steps=spec.warmup, lr_scheduler_type="linear", seed=spec.seed, data_seed=spec.seed,
        logging_steps=max(1, min(10, steps // 20)), save_strategy="steps", save_steps=eval_steps,
        save_total_limit=2, eval_strategy="steps" if evaluator else "no", eval_steps=eval_steps,
        load_best_model_at_end=evaluator is not None,
        metric_for_best_model="eval_dev_ndcg@10" if evaluator else None, greater_is_better=True,
        fp16=cuda, use_cpu=not cuda, report_to="none", dataloader_drop_last=True,
        disable_tqdm=not progress, save_only_model=False)
    trainer = Trainer(model=model, args=args, train_dataset=train, loss=_loss(spec, model),
                                  evaluator=evaluator)
    start_eval = evaluator(model) if evaluator else {}
    resume = get_last_checkpoint(str(workdir)) if workdir.is_dir() else None
    if resume:
        log(f"resuming from {resume}")
    t0 = time.perf_counter()
    trainer.train(resume_from_checkpoint=resume)
    seconds = time.perf_counter() - t0
    if spec.lora:
        from rankers.crossencoder import score_pairs

        probe = [(e.query, e.positive) for e in data.examples[:8]]
        before = score_pairs(model, probe, spec.max_length, 8)
        _merge_lora(model[0])
        after = score_pairs(model, probe, spec.max_length, 8)
        if abs(before - after).max() > 1e-3:
            raise RuntimeError(f"[recipes.{spec.name}]: merging LoRA changed the scores by {abs(before - after).max():g}")
    model.save(str(out))
    history = {
        "recipe": spec.name, "steps": steps, "examples": len(train), "pairs_per_step": per_step * (1 + spec.negatives),
        "train_seconds": round(seconds, 1), "device": _device_name(), "resumed_from": resume,
        "start_dev": {k: float(v) for k, v in start_eval.items()},
        "best_checkpoint": trainer.state.best_model_checkpoint, "best_metric": trainer.state.best_metric,
        "log": [{k: v for k, v in h.items() if isinstance(v, (int, float))} for h in trainer.state.log_history],
    }
    log(f"trained {spec.name}: {steps} steps in {seconds:.0f} s on {_device()}"
        + (f", best dev nDCG@10 {trainer.state.best_metric:.4f}" if trainer.state.best_metric is not None else ""))
    return history


def plot_history(history: dict, path: Path, title: str = "") -> None:
    """Training loss and dev nDCG@10 against steps, one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    loss = [(h["step"], h["loss"]) for h in history["log"] if "loss" in h and "step" in h]
    dev = [(h["step"], h["eval_dev_ndcg@10"]) for h in history["log"] if "eval_dev_ndcg@10" in h]
    start = history.get("start_dev", {}).get("dev_ndcg@10")
    if start is not None:
        dev = [(0, start)] + dev
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if loss:
        ax.plot(*zip(*loss), color="tab:blue", label="training loss")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss", color="tab:blue")
    if dev:
        ax2 = ax.twinx()
        ax2.plot(*zip(*dev), "o-", color="tab:red", label="dev nDCG@10")
        ax2.set_ylabel("dev nDCG@10", color="tab:red")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
