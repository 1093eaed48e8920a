"""Does detokenisation invert tokenisation? BLEU of a round trip of the raw test references.

    python bench/detok_roundtrip.py PREPARED_DIR

Prints sacreBLEU (cased, default signature) of
  - ours: Preprocessor.tokenize then .detokenize,
  - ours with case: .encode (tokenise + truecase) then .decode (recase + detokenise),
  - Moses' detokeniser (sacremoses) on Moses' tokens, for comparison,
each against the raw references. The first release's bar: ours >= 99.5.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from sacrebleu.metrics import BLEU
from sacremoses import MosesDetokenizer, MosesTokenizer

from mtcompare.data.tokenize import Preprocessor
from mtcompare.fileio import read_lines


def main(prepared: Path) -> None:
    lang = json.loads((prepared / "manifest.json").read_text(encoding="utf-8"))["tgt_lang"]
    references = read_lines(prepared / f"test.{lang}")
    pre = Preprocessor.load(prepared / f"preprocess.{lang}.json")
    moses_tokenizer, moses_detokenizer = MosesTokenizer(lang), MosesDetokenizer(lang)
    candidates = {
        "ours, tokenise -> detokenise": [pre.detokenize(pre.tokenize(line))
                                         for line in references],
        "ours, encode -> decode (with truecasing)": [pre.decode(pre.encode(line))
                                                     for line in references],
        "Moses (sacremoses) tokenise -> detokenise": [
            moses_detokenizer.detokenize(moses_tokenizer.tokenize(line, escape=False))
            for line in references
        ],
    }
    bleu = BLEU()
    for name, lines in candidates.items():
        score = bleu.corpus_score(lines, [references])
        exact = sum(line == reference for line, reference in zip(lines, references))
        print(f"{name:<45} BLEU {score.score:6.2f}  exact lines {exact:,}/{len(references):,}")
    print(f"signature: {bleu.get_signature()}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1]))
