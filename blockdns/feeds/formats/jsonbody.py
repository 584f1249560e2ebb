"""Loading a JSON feed body: any JSON problem becomes a FeedFormatError naming the feed."""

from __future__ import annotations

import json

from blockdns.errors import FeedFormatError
from blockdns.feeds.formats.base import ParseOptions


def load_json(text: str, options: ParseOptions) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise FeedFormatError(
            f"not {options.format} format: invalid JSON: {err.msg}", feed=options.feed, line=err.lineno
        ) from None
    except (ValueError, RecursionError) as err:
        raise FeedFormatError(
            f"not {options.format} format: invalid JSON: {err}", feed=options.feed
        ) from None
