"""Developer checks that run in the test suite and from the command line."""
