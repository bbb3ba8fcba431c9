"""`python -m geo.cli`: the same as the `hotspots` command."""

from geo.cli import main

if __name__ == "__main__":
    main()
