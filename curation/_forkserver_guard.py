"""Imported by the fork server alone (its first preload, curation/workers.py): the fork server
dies with the process that started it, and its workers die with it in turn."""

from curation.workers import die_with_parent

die_with_parent()
