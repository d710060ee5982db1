"""Store an olmap checkpoint in float16 (half the size), as olmap ships its initialisations.

Usage::

    python tools/half_checkpoint.py ctinit.pt \\
        olmap/segment/weights/deeplabv3_mobilenet_v3_large-ct-synthetic.pt
"""

from __future__ import annotations

import argparse

from olmap.segment.checkpoint import load_checkpoint, save_checkpoint


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source")
    ap.add_argument("out")
    args = ap.parse_args()
    model, meta = load_checkpoint(args.source)
    save_checkpoint(args.out, model, meta, half=True, overwrite=True)


if __name__ == "__main__":
    main()
