"""Phrase-based statistical MT: alignment, phrase table, language model, decoder."""
