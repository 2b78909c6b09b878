"""``python -m losscmp`` and the installed ``losscmp`` command."""

from losscmp import startup


def main() -> None:
    """The console script's entry point (pyproject.toml names it): the startup guard, then
    the command line."""
    startup.guard()  # before the CLI's imports: a stop while they load is one line
    from losscmp.cli import run_command_then_exit_fast

    run_command_then_exit_fast()


if __name__ == "__main__":
    main()
