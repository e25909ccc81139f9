"""The FAQ knowledge base: entries in `entries/*.yaml` (schema, linter), their retrieval with "I don't
know" (`retrieval.Retriever`), and its evaluation on held-out questions. See knowledge/README.md."""
