"""``python -m gpytorch_ext.staging``; see :mod:`gpytorch_ext.staging`."""

import sys

from ._cli import main

if __name__ == "__main__":
    sys.exit(main())
