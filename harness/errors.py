"""Errors that are the user's to fix. Their message says what was wrong, where, and what works."""


class RankbenchError(Exception):
    """Base class: the CLI prints the message (no traceback) and exits with status 2."""


class ConfigError(RankbenchError):
    """bench.toml names something that does not exist or is malformed."""


class DataError(RankbenchError):
    """A data file is missing, malformed, or fails its checksum. Messages name file and line."""


class RankerUnavailable(RankbenchError):
    """A ranker cannot run here: a missing extra, or a model that cannot be had offline."""


def _one_edit(a: str, b: str) -> bool:
    """True if a and b differ by one substitution, insertion, deletion or adjacent swap."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i, (x, y) in enumerate(zip(a, b)) if x != y]
        return len(diff) == 1 or (len(diff) == 2 and diff[1] == diff[0] + 1
                                  and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]])
    short, long_ = sorted((a, b), key=len)
    return any(long_[:i] + long_[i + 1:] == short for i in range(len(long_)))


def did_you_mean(name: str, choices) -> str:
    """' (did you mean "x"?)' for the closest choice (case-insensitive), or '' when none is close."""
    import difflib

    by_lower = {}
    for c in choices:
        by_lower.setdefault(str(c).lower(), str(c))
    key = name.lower()
    if key in by_lower and by_lower[key] != name:
        return f' (did you mean "{by_lower[key]}"?)'
    close = difflib.get_close_matches(key, list(by_lower), n=1, cutoff=0.6)
    if not close:
        close = [c for c in by_lower if _one_edit(key, c)][:1]
    return f' (did you mean "{by_lower[close[0]]}"?)' if close else ""


def unknown(what: str, name: str, choices, where: str = "") -> str:
    """Message for an unknown name: names the alternatives and the nearest one."""
    choices = sorted(choices)
    at = f"{where}: " if where else ""
    listed = ", ".join(choices) if choices else "none defined"
    return f'{at}unknown {what} "{name}"{did_you_mean(name, choices)}; known: {listed}'


class StorageError(RankbenchError):
    """A folder rankbench writes to (reports, the cache home) cannot be used: names it and why."""
