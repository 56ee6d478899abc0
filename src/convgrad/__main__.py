"""``python -m convgrad`` and the ``convgrad`` console script: the command line (``convgrad.cli``).

Without arguments it runs ``convgrad check`` on the seed note's example (a 1x4x4x1 input, a 3x3
filter, VALID, channels-last): every way of computing its gradients, and whether they agree.
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    from .cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
