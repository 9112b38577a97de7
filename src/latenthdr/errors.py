"""Errors the library raises for bad input. The CLI turns them into one line and a non-zero exit."""


class LatentHDRError(Exception):
    """Base class for every error latenthdr raises on purpose."""


class InputError(LatentHDRError, ValueError):
    """A caller-supplied value is wrong.

    ``argument`` names what was wrong (a CLI flag, a function parameter or a file path); the message
    says what was found and what is accepted.
    """

    def __init__(self, argument: str, message: str):
        self.argument = argument
        self.message = message
        super().__init__(f"{argument}: {message}")


class OutputExistsError(LatentHDRError, FileExistsError):
    """An output path exists and the caller did not allow overwriting it."""

    def __init__(self, path):
        self.path = path
        super().__init__(f"{path}: exists; pass --overwrite (overwrite=True) to replace it")


class WriteFailedError(LatentHDRError):
    """The system refused to write an output (a full disk, an I/O error): not the caller's arguments. The CLI exits
    with 1 for it, as for other refusals of the system, and 2 for every other ``LatentHDRError``."""
