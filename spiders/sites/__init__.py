"""One module per site: URL builders and pure parsers over page text."""
