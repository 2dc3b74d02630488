"""``python -m harbourmaster``: the same command as the ``harbourmaster`` console script."""

from harbourmaster.cli.main import run

if __name__ == "__main__":
    run()
