"""Imported by the fork server alone (its first preload, manifests/workers.py): the fork server
dies with the process that started it, and its workers die with it in turn."""

from manifests.workers import die_with_parent

die_with_parent()
