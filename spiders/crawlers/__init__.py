"""Scrapy spiders, one per site."""
