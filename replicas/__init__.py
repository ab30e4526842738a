"""What the tests, the demo and the benchmarks run against instead of the web: artwork and bad
inputs drawn in code (`drawn`), and local replicas of the sites with their server (`sites`).

Nothing in spiders or curation imports this package; it imports only `manifests` and `media`.
"""
