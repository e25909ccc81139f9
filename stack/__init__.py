"""The local stack: which processes make up the product, training, and the supervisor."""
