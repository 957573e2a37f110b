"""The JSON HTTP API: request and response schemas, middlewares, the micro-batcher, the app and the
process supervisor behind ``names serve``.
"""
