"""Monitoring of the champion on labelled batches: metrics, drift, ranges, reports, alerts.

Pure functions live here; the Prefect tasks in ``tasks/monitor.py`` and the flow in
``flows/monitoring.py`` wrap them.
"""
