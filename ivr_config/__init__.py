"""The operator's configuration files (YAML, each with a JSON schema beside it) and their loader."""
