"""Item pipelines, one per file: validate -> opt-out -> repeats -> store."""
