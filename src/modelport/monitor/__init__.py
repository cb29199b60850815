"""Monitoring: drift of inputs and outputs against a reference, alert rules and notifiers."""
