"""``python -m losscmp`` and the installed ``losscmp`` command."""

from losscmp import startup


def main() -> None:
    startup.guard()  # before the CLI's imports: a stop while they load is one line
    from losscmp.cli import entry

    entry()


if __name__ == "__main__":
    main()
