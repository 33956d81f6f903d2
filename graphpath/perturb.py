"""`python -m graphpath.perturb`: the command line of `graphpath.analysis.perturb` (its module docstring says what it does)."""
import sys

from graphpath.analysis.perturb import main

if __name__ == "__main__":
    sys.exit(main())
