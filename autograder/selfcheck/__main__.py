"""`python -m selfcheck NOTEBOOK --assignment A` (the bundle's selfcheck.py passes the assignment)."""
import sys

from .runner import main

sys.exit(main())
