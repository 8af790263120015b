"""Loader execution in worker processes, one process per loader file.

The daemon's side: `pool` (which process runs which loader, the warm spare, eviction),
`process` (one process: its pipes, runs and timeouts) and `spawn` (starting one, the first
early). The worker's side: `main` (the program a worker runs: fresh imports, Context, runs),
`capture` (the code and files a run depends on) and `locate` (where in the user's code a failure
is). `ipc` is the messages between the two.
Empty on purpose: the worker imports this package at start-up.
"""
