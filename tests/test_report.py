"""The report: example selection, Markdown and the terminal summary from one record."""

from mtcompare.eval.report import pick_examples, render_markdown, summary_table
from mtcompare.progress import format_duration, format_rate


def _results():
    signatures = {"BLEU": "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0",
                  "chrF": "nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.6.0"}
    system = {"BLEU": 30.5, "chrF": 55.25, "signatures": signatures, "train_seconds": 245.0,
              "translate_seconds": 100.0, "sentences_per_second": 12.88,
              "model_bytes": 3 * 1024 * 1024}
    return {
        "corpus": "bible-es-en", "src_lang": "es", "tgt_lang": "en", "case": "truecase",
        "counts": {"train": 10, "dev": 2, "test": 2},
        "dropped": {"empty": 0, "too_long": 1, "ratio": 0},
        "systems": {"smt": system, "nmt": dict(system, BLEU=20.0),
                    "copy-source": {"BLEU": 2.0, "chrF": 20.0, "signatures": signatures}},
        "examples": [{"index": 0, "ref": "Genesis 6:1", "source": "a | b", "reference": "r",
                      "smt": "s", "nmt": "n"}],
        "command": "mtcompare benchmark --out run", "environment": {"torch": "2.13.0"},
    }


def test_examples_are_spread_evenly_and_stable():
    assert pick_examples(5) == [0, 1, 2, 3, 4]
    assert pick_examples(1288) == [0, 143, 286, 429, 572, 715, 858, 1001, 1144, 1287]


def test_markdown_has_the_table_signatures_and_examples():
    text = render_markdown(_results())
    assert "| smt | 30.50 | 55.25 | 4m05s | 12.9 sent/s | 3.1 MB |" in text
    assert "| copy-source | 2.00 | 20.00 | – | – | – |" in text
    assert "tok:13a" in text and "**Genesis 6:1**" in text
    assert "a \\| b" in text  # a bar in a verse does not break the Markdown
    assert "cleaning dropped 1 (empty: 0, too_long: 1, ratio: 0)" in text


def test_summary_table_lists_every_system():
    rows = summary_table(_results()).splitlines()
    assert rows[0].split() == ["system", "BLEU", "chrF", "train", "sent/s", "size"]
    assert [row.split()[0] for row in rows[2:]] == ["smt", "nmt", "copy-source"]


def test_durations_and_rates():
    assert format_duration(75.2) == "1m15s"
    assert format_duration(3725) == "1h02m"
    assert format_rate("align", 50, 200, 10.0, "pairs") == (
        "align: 50/200 pairs, 5.0 pairs/s, ETA 30s")
