"""`python -m graphpath.basin`: the command line of `graphpath.analysis.basin` (its module docstring says what it does)."""
import sys

from graphpath.analysis.basin import main

if __name__ == "__main__":
    sys.exit(main())
