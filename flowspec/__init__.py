"""Flow definitions: load and validate `flows/`, lint them against the catalogue, compile to Rasa."""
