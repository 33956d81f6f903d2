"""`python -m graphpath.llc`: the command line of `graphpath.analysis.llc_run` (its module docstring says what it does)."""
import sys

from graphpath.analysis.llc_run import main

if __name__ == "__main__":
    sys.exit(main())
