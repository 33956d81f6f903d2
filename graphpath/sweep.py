"""`python -m graphpath.sweep`: the command line of `graphpath.sweeps.runner` (its module docstring says what it does)."""
import sys

from graphpath.sweeps.runner import main

if __name__ == "__main__":
    sys.exit(main())
