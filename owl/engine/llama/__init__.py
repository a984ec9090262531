"""The one llama.cpp wrapper: load a model file, make a context (generation, embeddings,
scoring), fill a batch, the vocabulary, log silencing — and the backend and embedder built
on them. Only modules here touch llama_cpp (its private parts included).
"""
