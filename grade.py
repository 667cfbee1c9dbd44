#!/usr/bin/env python3
"""The autograder's command line; see `python grade.py --help` and the README."""
import sys

from autograder.cli import main

if __name__ == "__main__":
    sys.exit(main())
