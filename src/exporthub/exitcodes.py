"""Exit codes of the ``exporthub`` command, the same for every subcommand."""

EXIT_OK = 0
"""Done: the export is saved, the command did what it was asked."""
EXIT_FAILED = 1
"""The job, or its conversion, failed or was stopped."""
EXIT_USAGE = 2
"""Wrong arguments, a missing or rejected API key, or a request the server
refused (an unsupported URL, a used-up allowance)."""
EXIT_UNREACHABLE = 3
"""The server could not be reached, or failed."""
EXIT_TIMEOUT = 4
"""``--timeout`` passed before the export was done; it goes on on the server."""
EXIT_INTERRUPTED = 130
"""Stopped with Ctrl-C (128 + SIGINT, as shells report it)."""
