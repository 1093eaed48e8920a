"""Evaluation: sacreBLEU metrics and reports."""
