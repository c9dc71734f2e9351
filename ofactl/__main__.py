"""`python -m ofactl` runs the command line."""

from ofactl.cli import main

if __name__ == "__main__":
    main()
