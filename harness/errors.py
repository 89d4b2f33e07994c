"""Errors that are the user's to fix. Their message says what was wrong, where, and what works."""


class RankbenchError(Exception):
    """Base class: the CLI prints the message (no traceback) and exits with status 2."""


class ConfigError(RankbenchError):
    """bench.toml names something that does not exist or is malformed."""


class DataError(RankbenchError):
    """A data file is missing, malformed, or fails its checksum. Messages name file and line."""


class RankerUnavailable(RankbenchError):
    """A ranker cannot run here: a missing extra, or a model that cannot be had offline."""


def did_you_mean(name: str, choices) -> str:
    """' (did you mean "x"?)' for the closest choice, or '' when nothing is close."""
    import difflib

    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""


def unknown(what: str, name: str, choices, where: str = "") -> str:
    """Message for an unknown name: names the alternatives and the nearest one."""
    choices = sorted(choices)
    at = f"{where}: " if where else ""
    listed = ", ".join(choices) if choices else "none defined"
    return f'{at}unknown {what} "{name}"{did_you_mean(name, choices)}; known: {listed}'
