"""``python -m convgrad``: the seed note's demonstration."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from ._demo import main as demo

    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in ("-h", "--help"):
        print("usage: python -m convgrad\n\nPrints every way of computing the seed note's gradients "
              "and whether they agree.")
        return 0
    return demo()


if __name__ == "__main__":
    raise SystemExit(main())
