"""The public contract: conventions (every cluster-visible string) and models (the kinds)."""
