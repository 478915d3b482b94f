"""python-explode: a pgsink converter written in Python (componentize-py).

It explodes a JSON array into one row per element, which the bundled
parse-path converter cannot do. With the default settings, the message

    {"order": 17, "items": [{"sku": "a", "qty": 2}, {"sku": "b", "qty": 1}]}

becomes two rows of the columns (order, sku, qty):

    17  a  2
    17  b  1

Settings (`[plugin.settings]` in the pgsink configuration):

    array            the field of the message that holds the array (default "items")
    message.columns  comma-separated columns taken from the message itself instead
                     of from each element (default "order")

Every other column is read from each element, by its name. A missing field
or a JSON null is NULL; strings are loaded as they are (escapes decoded);
numbers keep their exact text; true/false are written as such; objects and
arrays are written as compact JSON (for json/jsonb columns).

A message without the array (or with an empty or null one) becomes no row: it
is filtered out. A message that is not valid UTF-8 or JSON, that is not a JSON
object, or whose array is not an array of objects, fails with a reason and
goes to the dead-letter table; the other messages of the batch are unaffected.
A tombstone (null value) is skipped.
"""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import types

NAME = "python-explode"
VERSION = "0.1.0"
SETTINGS = ("array", "message.columns")

# ---------------------------------------------------------------------------
# COPY text, the format the host loads: fields separated by tabs, rows ended
# by a newline, NULL written as backslash-N. Inside a value, backslash, tab,
# newline and carriage return must be escaped, and a NUL character cannot be
# stored in PostgreSQL text at all. The host checks every row, but a row it
# rejects costs the whole message, so get this right.
# ---------------------------------------------------------------------------

NULL = "\\N"
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def copy_field(value):
    """One COPY text field: None is NULL, text is escaped; NUL is an error."""
    if value is None:
        return NULL
    if "\0" in value:
        raise ValueError("a value contains a NUL character, which PostgreSQL text cannot store")
    return value.translate(_ESCAPES)


def copy_row(values):
    """One COPY text row (with its newline) from a list of str or None."""
    return "\t".join([copy_field(v) for v in values]) + "\n"


# ---------------------------------------------------------------------------
# JSON values as column text
# ---------------------------------------------------------------------------


def _reject_constant(name):
    raise ValueError(f"{name} is not a JSON number")


class Number(str):
    """A JSON number, kept as the text it was written as (no float rounding)."""


# One decoder for every message (json.loads with options would build one per call).
_DECODER = json.JSONDecoder(parse_float=Number, parse_int=Number, parse_constant=_reject_constant)


def parse_json(text):
    """Parses JSON; numbers become Number (their exact text)."""
    return _DECODER.decode(text)


def to_json(value):
    """Compact JSON text of a parsed value (numbers as they were written)."""
    if isinstance(value, dict):
        return "{" + ",".join(json.dumps(k, ensure_ascii=False) + ":" + to_json(v)
                              for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(to_json(v) for v in value) + "]"
    if isinstance(value, Number):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if value is None:
        return "null"
    return to_text(value)


def to_text(value):
    """The text a column gets for a JSON value; None for null."""
    if value is None or isinstance(value, str):  # a Number is a str: its text
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return to_json(value)  # an object or an array


# ---------------------------------------------------------------------------
# The conversion, plain Python (test_explode.py runs it natively)
# ---------------------------------------------------------------------------


class Explode:
    """A configured converter: which field holds the array, where each column comes from."""

    def __init__(self, settings, columns):
        unknown = sorted(set(settings) - set(SETTINGS))
        if unknown:
            raise ValueError(f"{NAME}: unknown setting(s) {', '.join(unknown)}; "
                             f"it knows {', '.join(SETTINGS)}")
        if not columns:
            raise ValueError(f"{NAME}: the table lists no columns")
        self.array = settings.get("array", "items")
        if not self.array:
            raise ValueError(f"{NAME}: the setting array is empty")
        listed = settings.get("message.columns", "order")
        from_message = {c.strip() for c in listed.split(",") if c.strip()}
        missing = sorted(from_message - set(columns))
        if missing:
            raise ValueError(f"{NAME}: message.columns names {', '.join(missing)}, "
                             f"which the table does not list ({', '.join(columns)})")
        # (True, name): from the message; (False, name): from each element.
        self.sources = [(c in from_message, c) for c in columns]

    def convert(self, value):
        """The COPY text of one message value (bytes) and its row count.

        Raises ValueError (with the reason) if the message cannot be converted.
        """
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"the message value is not valid UTF-8: {e}") from None
        try:
            message = parse_json(text)
        except RecursionError:
            raise ValueError("invalid JSON: nested too deeply") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"invalid JSON: {e}") from None
        if not isinstance(message, dict):
            raise ValueError("the message is not a JSON object")
        items = message.get(self.array)
        if items is None:
            return b"", 0  # nothing to explode: filtered out
        if not isinstance(items, list):
            raise ValueError(f"{self.array} is not a JSON array")
        shared = {name: to_text(message.get(name)) for is_shared, name in self.sources if is_shared}
        rows = []
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise ValueError(f"{self.array}[{i}] is not a JSON object")
            rows.append(copy_row([shared[name] if is_shared else to_text(item.get(name))
                                  for is_shared, name in self.sources]))
        try:
            return "".join(rows).encode("utf-8"), len(rows)
        except UnicodeEncodeError:
            raise ValueError("a string holds a lone surrogate escape, which is not valid UTF-8") from None


# ---------------------------------------------------------------------------
# The component's exports (the pgsink:converter/convert interface)
# ---------------------------------------------------------------------------

_configured = None


def convert_batch(explode, batch):
    """Converts a whole batch: one outcome per message, rows of good messages only."""
    data = batch.data
    chunks = []
    outcomes = []
    for m in batch.messages:
        if m.value is None:
            outcomes.append(types.Outcome_Rows(0))  # tombstone: skipped
            continue
        try:
            text, rows = explode.convert(data[m.value.start:m.value.start + m.value.len])
        except ValueError as e:
            outcomes.append(types.Outcome_Failed(str(e)))
            continue
        chunks.append(text)
        outcomes.append(types.Outcome_Rows(rows))
    # No runs: every row is an insert into the sink's (first) table.
    return types.Converted(copy_text=b"".join(chunks), runs=[], outcomes=outcomes)


class Convert(exports.Convert):
    def info(self):
        return types.ConverterInfo(name=NAME, version=VERSION)

    def configure(self, settings, tables):
        global _configured
        try:
            _configured = Explode(dict(settings), [c.name for c in tables[0].columns])
        except ValueError as e:
            raise Err(str(e))

    def convert_batch(self, input):
        if _configured is None:
            failed = types.Outcome_Failed("the converter was not configured")
            return types.Converted(copy_text=b"", runs=[], outcomes=[failed for _ in input.messages])
        return convert_batch(_configured, input)
