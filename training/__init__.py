"""Training in a room of its own: recipe orchestration (mining, the leakage guard, the model cache
entry), the trainer and the distillation losses. It stands on the config and the rankers, and
only the runner (which resolves ``model = "recipe:NAME"``) stands on it."""
