"""`python -m vmd`: the same command line as the `vmd` console script."""

from vmd.cli import main

main()
