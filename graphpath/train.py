"""`python -m graphpath.train`: the command line of `graphpath.training.run` (its module docstring says what it does)."""
import sys

from graphpath.training.run import main

if __name__ == "__main__":
    sys.exit(main())
