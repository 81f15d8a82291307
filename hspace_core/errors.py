"""The one exception type the engine raises for bad input.

Every user-facing failure (a corrupt checkpoint, a direction made for another model, an image of the
wrong size) is an ``HSpaceError`` whose message is written for the person who gave the input: the
command line prints it on one line, and ComfyUI shows it in the node's red box.
"""


class HSpaceError(ValueError):
    """Bad input to the engine; the message says what was wrong and what to do."""
