"""Errors that the command line turns into one clear line and an exit code."""


class ArtshieldError(Exception):
    """A problem the user can fix (bad input, missing model, unreachable hub); exit code 2."""


class InputError(ArtshieldError):
    """One input file is unusable; batch commands report it and go on with the others."""

    def __init__(self, path, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem
