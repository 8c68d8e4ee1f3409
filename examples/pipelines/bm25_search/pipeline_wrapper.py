"""BM25 keyword search over docs.jsonl: a retrieval pipeline that needs no model, no API key and no network."""

import json
from pathlib import Path
from typing import Annotated, Any

# Import haystack.tools before hayhooks' helpers. haystack.tools and haystack.components.agents import each other;
# hayhooks deploys startup pipelines in parallel threads, a YAML pipeline's first load enters that cycle through
# haystack.tools while get_last_user_message's module enters it through agents, and the losing thread fails with
# "cannot import name 'ComponentTool'" (hayhooks 2.1.0, haystack-ai 3.4.1). Same entry point, no cross-thread cycle.
import haystack.tools  # noqa: F401
from hayhooks import BasePipelineWrapper, get_last_user_message, log
from haystack import Document, Pipeline
from haystack.components.retrievers.in_memory import InMemoryBM25Retriever
from haystack.document_stores.in_memory import InMemoryDocumentStore
from haystack.document_stores.types import DuplicatePolicy
from pydantic import Field

NO_MATCH_REPLY = "No document matches that question."


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        """Index docs.jsonl once per deployment; every worker process builds its own copy."""
        # Read now, not lazily: hayhooks loads startup pipelines from a temporary copy of this
        # directory and deletes it once setup() has returned.
        docs_path = Path(__file__).parent / "docs.jsonl"
        with docs_path.open(encoding="utf-8") as lines:
            documents = [Document(content=row["content"], meta=row.get("meta", {})) for row in map(json.loads, lines)]

        # shared=False keeps the documents on this instance, so a redeploy frees the old index
        # instead of leaving it in Haystack's process-global storage.
        store = InMemoryDocumentStore(shared=False)
        store.write_documents(documents, policy=DuplicatePolicy.OVERWRITE)

        self.pipeline = Pipeline()
        self.pipeline.add_component("retriever", InMemoryBM25Retriever(document_store=store))
        log.info("bm25_search indexed {} documents from {}", len(documents), docs_path.name)

    def run_api(self, query: str, top_k: Annotated[int, Field(ge=1, le=20)] = 3) -> list[dict[str, Any]]:
        """
        Search the bundled documents about Haystack, Hayhooks and Gunicorn by BM25 keyword relevance.

        Args:
            query: Keywords or a question to search for.
            top_k: Maximum number of documents to return (1-20).

        Returns:
            The matching documents, best first, each with its content, BM25 score and meta.
        """
        return [{"content": doc.content, "score": doc.score, "meta": doc.meta} for doc in self._search(query, top_k)]

    def run_chat_completion(self, model: str, messages: list[dict], body: dict) -> str:
        """Answer the last user message with the best matching document, so the chat endpoint works without an LLM."""
        question = get_last_user_message(messages)
        if isinstance(question, list):  # OpenAI content parts: [{"type": "text", "text": "..."}, ...]
            question = " ".join(part.get("text") or "" for part in question if isinstance(part, dict))
        if not isinstance(question, str) or not question.strip():
            return NO_MATCH_REPLY
        documents = self._search(question, top_k=1)
        if not documents or not documents[0].content:
            return NO_MATCH_REPLY
        return documents[0].content

    def _search(self, query: str, top_k: int) -> list[Document]:
        """Run the retriever; BM25 drops documents sharing no term with the query, so this may return none."""
        result = self.pipeline.run({"retriever": {"query": query, "top_k": top_k}})
        return result["retriever"]["documents"]
