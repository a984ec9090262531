"""Private documents, indexed and asked on this machine (`owl docs`, `owl ask`).

files.py walks the folders named (never outside them), readers/ turn each file into pages of
text, chunking.py cuts pages into chunks with their spans, ingest.py embeds and indexes them
(index.py: SQLite with FTS5 for BM25 and sqlite-vec for vectors), retrieve.py fuses the two
rankings, ask.py and grounding.py answer from the chunks with checked citations, rerank.py
ranks passages by a chat model's query likelihood.
"""

from owl.docs.ask import Answer, Retrieved, ask, retrieve
from owl.docs.collections import collection_names, collection_path, remove_collection
from owl.docs.ingest import IngestProgress, IngestReport, add_documents
from owl.docs.types import Chunk, Hit, Page, Skipped

__all__ = [
    "Answer",
    "Chunk",
    "Hit",
    "IngestProgress",
    "IngestReport",
    "Page",
    "Retrieved",
    "Skipped",
    "add_documents",
    "ask",
    "collection_names",
    "collection_path",
    "remove_collection",
    "retrieve",
]
