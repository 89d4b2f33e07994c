"""Request bodies: unknown fields are errors, every field typed; the error names the field."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class DocumentIn(_Body):
    text: str
    id: str | None = None


class RerankRequest(_Body):
    """Cohere v2's rerank body; TEI's ``texts`` (with ``return_text``, ``raw_scores``) accepted too."""

    query: str
    documents: list[str | DocumentIn] | None = None
    texts: list[str] | None = None                     # TEI
    top_n: int | None = Field(None, ge=1)
    return_documents: bool = False
    return_text: bool | None = None                    # TEI's name for return_documents
    raw_scores: bool | None = None                     # TEI: scores as the model gives them
    max_tokens_per_doc: int | None = Field(None, ge=1)
    truncate: bool = True                              # False: a document over the model's length is a 422
    model: str | None = None                           # when given, it must be the ranker served


class SearchRequest(_Body):
    query: str
    k: int = Field(10, ge=1, le=1000)


class EmbedRequest(_Body):
    """TEI's /embed."""

    inputs: str | list[str]
    normalize: bool = True


class OpenAIEmbeddingsRequest(_Body):
    input: str | list[str]
    model: str | None = None
    encoding_format: Literal["float"] = "float"
    user: str | None = None
