"""RAG on rankbench's rankers: the context an LLM reads (threshold and top-k, deduplication, a
token budget, citations), measured against qrels, and adapters for the RAG frameworks."""
from .context import Candidate, Context, ContextSpec, Passage, build_context, token_counter
from .pipeline import Answer, RagPipeline, RagResult, openai_generator

__all__ = ["Answer", "Candidate", "Context", "ContextSpec", "Passage", "RagPipeline", "RagResult",
           "build_context", "openai_generator", "token_counter"]
