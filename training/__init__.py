"""headshot: training."""
