"""Query texts with their literals replaced before anything keeps them."""

from __future__ import annotations

import logging
import re

log = logging.getLogger(__name__)


# A statement as the server shows it, read raw (bounded) and then redacted by :func:`redact` before anything
# keeps it: its string literals may hold personal data.
_REDACTED_QUERY = "left({col}, 4000)"
_DOLLAR_TAG = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")


def redact(text: str | None, limit: int = 160) -> str | None:
    """``text`` with every string literal replaced by ``?``: standard ``'…'`` (``''`` inside), escape strings
    ``E'…\\'…'``, dollar quotes ``$$…$$`` / ``$tag$…$tag$``, and a literal cut off by
    ``track_activity_query_size`` (everything from its opening quote). Quoted identifiers are kept."""
    if text is None:
        return None
    out, i, n = [], 0, len(text)
    while i < n:
        ch = text[i]
        word_before = i > 0 and (text[i - 1].isalnum() or text[i - 1] in "_$")
        if ch == '"':  # a quoted identifier: kept as it is
            end = text.find('"', i + 1)
            end = n if end == -1 else end + 1
            out.append(text[i:end])
            i = end
            continue
        escape = ch in "eE" and i + 1 < n and text[i + 1] == "'" and not word_before
        if ch == "'" or escape:
            j = i + 2 if escape else i + 1
            while j < n:
                if escape and text[j] == "\\":
                    j += 2
                elif text[j] == "'" and j + 1 < n and text[j + 1] == "'":
                    j += 2
                elif text[j] == "'":
                    break
                else:
                    j += 1
            out.append("?")
            i = j + 1
            continue
        tag = _DOLLAR_TAG.match(text, i) if ch == "$" and not word_before else None
        if tag:
            end = text.find(tag.group(0), tag.end())
            out.append("?")
            i = n if end == -1 else end + len(tag.group(0))
            continue
        out.append(ch)
        i += 1
    return "".join(out)[:limit]


def _redacted(rows: list[dict]) -> list[dict]:
    for row in rows:
        row["query"] = redact(row.get("query"))
    return rows
