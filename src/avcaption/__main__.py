"""`python -m avcaption` is the `avcaption` command."""

from avcaption.cli import main

if __name__ == "__main__":
    main()
