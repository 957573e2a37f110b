"""Measuring a model: metrics, the evaluation report (text, JSON, CSV) and its plots (PNG).
"""
