"""The error type a command-line tool reports in one line (exit 2) instead of a traceback."""


class UserError(Exception):
    """Bad input the user can fix (a file, a key, a value); the message says what and where."""
