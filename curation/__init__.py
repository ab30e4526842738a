"""headshot: curation."""
