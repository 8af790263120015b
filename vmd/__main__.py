"""`python -m vmd`: the same command line as the `vmd` console script."""

import sys

if sys.argv[1:2] == ["serve"]:
    # Before any other import: the first worker's interpreter starts alongside the daemon's.
    from vmd.workers import spawn

    spawn.start_early()

from vmd.cli import main  # noqa: E402

main()
