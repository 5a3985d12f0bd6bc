"""``python -m tq.cli``: the same as the ``tq`` console script."""

from tq.cli import main

main()
