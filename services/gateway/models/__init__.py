"""The models endpoint (what the registry configures) and the embeddings endpoint."""
