"""`python -m graphpath.search`: the command line of `graphpath.sweeps.search` (its module docstring says what it does)."""
import sys

from graphpath.sweeps.search import main

if __name__ == "__main__":
    sys.exit(main())
