from losscmp.cli import entry

entry()
