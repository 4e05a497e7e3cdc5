"""The one error type users see: its message is a single line naming the thing and what to do."""


class AesbenchError(Exception):
    """A problem with the user's input or environment, reported as one line without a traceback."""
