"""``python -m losscmp`` and the installed ``losscmp`` command."""

import sys

# What losscmp cannot run without, by the platforms that have it: fcntl's locks keep two
# commands from writing one run folder, and SIGHUP stops a run as Ctrl-C does.
SUPPORTED_PLATFORMS = "Linux and macOS (on Windows, in WSL)"


def main() -> None:
    """The console script's entry point (pyproject.toml names it): the platform check, the
    startup guard, then the command line."""
    refuse_unsupported_platform()
    from losscmp import startup  # names SIGHUP at import: after the check

    startup.guard()  # before the CLI's imports: a stop while they load is one line
    from losscmp.cli import run_command_then_exit_fast

    run_command_then_exit_fast()


def refuse_unsupported_platform() -> None:
    """On Windows even ``losscmp --help`` was a traceback (no fcntl, no SIGHUP): one line
    and exit status 2 instead, as for any other mistake. The standard library only."""
    import signal

    try:
        import fcntl  # noqa: F401
    except ImportError:
        missing = True
    else:
        missing = not hasattr(signal, "SIGHUP")
    if missing:
        sys.stderr.write(f"losscmp: error: losscmp runs on {SUPPORTED_PLATFORMS}\n")
        sys.exit(2)


if __name__ == "__main__":
    main()
