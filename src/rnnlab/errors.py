"""The one exception type the CLI shows to users as a single line (no traceback)."""


class RnnlabError(Exception):
    """Bad input from the user: a file, row, option or value, named, with what was expected.

    The message must be one line. The CLI prints ``error: <message>`` on stderr and exits with 2.
    """
