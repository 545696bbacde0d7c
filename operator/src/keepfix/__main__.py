from keepfix.cli import main as _main

_main.main()
