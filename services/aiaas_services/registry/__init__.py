"""Registry service: models, versions, aliases, lineage and artifacts."""
