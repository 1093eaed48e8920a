"""mtcompare: phrase-based SMT and LSTM NMT side by side on one corpus."""

__version__ = "0.1.0"
