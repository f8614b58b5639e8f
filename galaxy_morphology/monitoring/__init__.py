"""Monitoring of the served model on labelled batches: metrics, drift, ranges, reports, alerts."""
