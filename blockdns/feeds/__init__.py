"""The list compiler: feed definitions, parsers, fetch, update and export.

The server imports only :mod:`blockdns.feeds.model` (definitions and the stored data format); the fetch path
(httpx) stays on the CLI side.
"""
