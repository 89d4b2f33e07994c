"""Adapters for the RAG frameworks, each behind its own extra: LangChain (``rag.adapters.langchain``),
LlamaIndex (``rag.adapters.llamaindex``), Haystack (``rag.adapters.haystack``) and PyTerrier
(``rag.adapters.pyterrier``). Each takes a bench.toml ranker name or a rankbench serve URL."""
