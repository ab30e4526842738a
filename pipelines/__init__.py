"""headshot: pipelines."""
