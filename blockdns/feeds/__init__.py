"""The list compiler: feed definitions, parsers, fetch, update and export.

==================  =====================================================================================
``model``           feed definitions (``feeds.toml``), the stored data format, atomic writes
``manifest``        ``data_dir/manifest.json``; which data file is current for each feed
``formats/``        one parser per feed format, plus the shared collector and error budget
``compact``         dropping duplicate and redundant entries
``checks``          refusing bodies that are never feeds (HTML, empty, binary)
``fetch``           downloads with httpx: the only module that imports it
``download``        one feed's URLs (v2fly includes too), conditionally
``store``           content-addressed data files committed through the manifest; run lock
``update``          ``lists update``: fetch, parse, compare, commit feed by feed
``report``          the update's text report
``refresh``         the command the server runs to refresh feeds
``export``          ``lists export``: the compiled policy in another server's syntax
==================  =====================================================================================

The server imports only :mod:`blockdns.feeds.model` and :mod:`blockdns.feeds.manifest` (through
``model.data_path``), never the fetch path; the CLI imports the update path inside its command.
"""
