"""`python -m graphpath.evaluate`: the command line of `graphpath.evaluation.suite` (its module docstring says what it does)."""
import sys

from graphpath.evaluation.suite import main

if __name__ == "__main__":
    sys.exit(main())
