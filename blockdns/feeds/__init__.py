"""The list compiler: feed definitions, parsers, fetch, update and export.

==================  =====================================================================================
``model``           feed definitions (``feeds.toml``), the stored data format, atomic writes
``manifest``        ``data_dir/manifest.json``: each feed's last update and the data file it committed
``formats/``        one parser per feed format, plus the shared collector and error budget
``compact``         dropping duplicate and redundant entries
``checks``          refusing bodies that are never feeds (HTML, empty, binary)
``fetch``           downloads with httpx: the only module that imports it
``download``        one feed's URLs (v2fly includes too), conditionally
``store``           content-addressed data files committed through the manifest; run lock; the one reader
``update``          ``lists update``: fetch, parse, compare, commit feed by feed
``report``          the update's text report
``refresh``         the command the server runs to refresh feeds
``export``          ``lists export``: the compiled policy in another server's syntax
==================  =====================================================================================

A feed's entries are a :class:`blockdns.entries.EntrySets`, a type kept outside this package so the policy
compiler can hold them without importing it. The server imports only :mod:`~blockdns.feeds.model`,
:mod:`~blockdns.feeds.manifest` and :mod:`~blockdns.feeds.store` (through ``runtime.build_policy``, which
hands what :func:`~blockdns.feeds.store.read_feed_sources` read to the compiler), never the fetch path; the
CLI imports the update path inside its command.
"""
