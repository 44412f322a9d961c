"""Provenance: know what is human and what a model made."""
