"""The request body parsers of the API (DRF's DEFAULT_PARSER_CLASSES names the JSON one).

Kept apart from core.api: DRF imports its parsers while its own views module loads.
"""

from __future__ import annotations

import codecs

from django.conf import settings
from rest_framework import exceptions, parsers
from rest_framework.utils import json

from tinyforge import bounded_json


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser over tinyforge.bounded_json: a body nested too deep is a 400 before the
    decoder recurses (DRF's own answers RecursionError, a 500, at about 1,000 levels)."""

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = codecs.getreader(encoding)(stream).read()
            return bounded_json.loads(text, parse_constant=json.strict_constant if self.strict else None)
        except ValueError as exc:
            raise exceptions.ParseError(f"JSON parse error - {exc}") from None
