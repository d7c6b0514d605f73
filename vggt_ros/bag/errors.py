"""The one exception type of the bag tools: bad input the user can fix (the CLI prints it, exit code 2)."""


class ReplayError(Exception):
    """A bag, topic, ground truth or option problem, with a message that says what to do about it."""
