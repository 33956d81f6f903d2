"""`python -m graphpath.interpret`: the command line of `graphpath.analysis.interpret` (its module docstring says what it does)."""
import sys

from graphpath.analysis.interpret import main

if __name__ == "__main__":
    sys.exit(main())
