"""Renderers of a gate `Report`.

Text for people, JSON for scripts, SARIF for code scanning, JUnit for CI test reports.
"""
