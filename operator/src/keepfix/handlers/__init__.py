"""Kopf handlers: fetch, decide with keepfix.core, apply. Thin."""
