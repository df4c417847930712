"""`python -m evonorm_search` runs the command line."""

from .cli import main

main()
