"""The ``omni`` command line: one entry point, a subcommand per job.

This package sits on top of everything else: it may import every layer of the suite, and
nothing imports it.
"""
