"""headshot: spiders."""
