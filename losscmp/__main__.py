from losscmp.cli import main

main()
