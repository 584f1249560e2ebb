"""``domains``: one name per line.

``#`` and ``!`` start comments (also after a name). A name is an exact entry unless the feed definition says
``match = "suffix"``; a name written ``*.name`` or ``.name`` covers ``name`` and everything below it whatever
the definition says.
"""

from __future__ import annotations

from blockdns.feeds.formats.base import Collector, ParseOptions, ParseResult, split_lines


def parse(text: str, options: ParseOptions) -> ParseResult:
    collector = Collector(options)
    for number, line in enumerate(split_lines(text), 1):
        content = line.split("#", 1)[0].strip()
        if not content or content.startswith("!"):
            continue
        collector.line()
        if " " in content or "\t" in content:
            collector.reject(number, "more than one name on the line", line)
            continue
        suffix = options.suffix
        if content.startswith(".") and not content.startswith(".."):
            content, suffix = content[1:], True
        collector.domain(content, suffix=suffix, allow=False, where=number, text=line)
    return collector.result()
