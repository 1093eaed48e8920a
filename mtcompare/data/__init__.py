"""Corpora in, prepared corpora out: reading, cleaning, splitting, shared tokenisation."""
