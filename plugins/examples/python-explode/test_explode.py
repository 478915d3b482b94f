"""Native tests of explode.py (plain CPython, no WebAssembly).

build.sh runs them before building the component:
    PYTHONPATH=target/bindings python3 -m unittest test_explode
"""

import unittest

import explode
from componentize_py_types import Err
from wit_world.imports import types


def make_batch(values):
    """A batch of messages with these values (bytes or None), laid out as the host does."""
    data = bytearray()
    messages = []
    for offset, value in enumerate(values):
        span = None
        if value is not None:
            span = types.Span(start=len(data), len=len(value))
            data += value
        messages.append(types.Message(topic=0, partition=0, offset=offset, timestamp=None,
                                      key=None, value=span, header_start=0, header_count=0))
    return types.Batch(topics=["orders"], data=bytes(data), headers=[], messages=messages)


def configure(settings=(), columns=("order", "sku", "qty")):
    table = types.Table(schema="public", name="t", key=[],
                        columns=[types.Column(name=c, type_name=None) for c in columns])
    explode.Convert().configure(list(settings), [table])


class CopyText(unittest.TestCase):
    def test_escapes_the_four_specials_and_null(self):
        self.assertEqual(explode.copy_field("a\\b\tc\nd\re"), "a\\\\b\\tc\\nd\\re")
        self.assertEqual(explode.copy_field("\\N"), "\\\\N")
        self.assertEqual(explode.copy_field(None), "\\N")
        self.assertEqual(explode.copy_field("plain é ✓"), "plain é ✓")
        self.assertEqual(explode.copy_row(["x", None, ""]), "x\t\\N\t\n")

    def test_nul_is_rejected(self):
        with self.assertRaisesRegex(ValueError, "NUL"):
            explode.copy_field("a\0b")


class Convert(unittest.TestCase):
    def convert(self, *values):
        out = explode.Convert().convert_batch(make_batch(list(values)))
        outcomes = [o.value if isinstance(o, types.Outcome_Rows) else "failed: " + o.value
                    for o in out.outcomes]
        return out.copy_text.decode(), outcomes

    def test_explodes_items_into_rows(self):
        configure()
        text, outcomes = self.convert(
            b'{"order":17,"items":[{"sku":"a","qty":2},{"sku":"b","qty":1}]}',
            b'{"order":18}',
            b'{"order":19,"items":[]}',
            None,
            b'{"order":20,"items":[{"sku":"tab\\there","qty":1.50},{"qty":null}]}',
        )
        self.assertEqual(text, "17\ta\t2\n17\tb\t1\n20\ttab\\there\t1.50\n20\t\\N\t\\N\n")
        self.assertEqual(outcomes, [2, 0, 0, 0, 2])

    def test_bad_messages_fail_alone(self):
        configure()
        text, outcomes = self.convert(
            b'{"order":1,"items":[{"sku":"ok","qty":1}]}',
            b'{"order":2,"items":',
            b'[1,2]',
            b'{"order":3,"items":{"sku":"x"}}',
            b'{"order":4,"items":[{"sku":"x"},7]}',
            b'{"order":5,"items":[{"sku":"a\\u0000b"}]}',
            b'{"order":6,"items":[{"sku":"caf\xe9"}]}',
            b'{"order":7,"items":[{"sku":"\\ud800"}]}',
            b'{"order":8,"items":[{"sku":"ok","qty":NaN}]}',
            b'{"order":9,"items":[{"sku":{"nested":[1.10,true,null,"q\\"t"]},"qty":-0}]}',
        )
        self.assertEqual(text, '1\tok\t1\n9\t{"nested":[1.10,true,null,"q\\\\"t"]}\t-0\n')
        self.assertEqual(outcomes[0], 1)
        self.assertEqual(outcomes[9], 1)
        reasons = outcomes[1:9]
        self.assertTrue(reasons[0].startswith("failed: invalid JSON: "), reasons[0])
        self.assertEqual(reasons[1], "failed: the message is not a JSON object")
        self.assertEqual(reasons[2], "failed: items is not a JSON array")
        self.assertEqual(reasons[3], "failed: items[1] is not a JSON object")
        self.assertIn("NUL", reasons[4])
        self.assertIn("not valid UTF-8", reasons[5])
        self.assertIn("lone surrogate", reasons[6])
        self.assertIn("NaN is not a JSON number", reasons[7])

    def test_settings(self):
        configure([("array", "lines"), ("message.columns", "order,customer")],
                  ("customer", "order", "sku"))
        text, outcomes = self.convert(b'{"order":1,"customer":"c","lines":[{"sku":"s","order":9}]}')
        self.assertEqual((text, outcomes), ("c\t1\ts\n", [1]))
        with self.assertRaises(Err) as e:
            configure([("message.columns", "order,nope")])
        self.assertIn("nope", e.exception.value)
        with self.assertRaises(Err) as e:
            configure([("arary", "x")])
        self.assertIn("unknown setting(s) arary", e.exception.value)

    def test_info(self):
        info = explode.Convert().info()
        self.assertEqual((info.name, info.version), ("python-explode", "0.1.0"))


if __name__ == "__main__":
    unittest.main()
