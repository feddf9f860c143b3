"""``python -m leifdb.cli``: the ``leifdb`` command."""

from leifdb.cli import console_main

if __name__ == "__main__":
    console_main()
