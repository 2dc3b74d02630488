"""Harbourmaster: self-hosted MLOps, from experiment to a governed production."""

from harbourmaster.errors import HarbourmasterError

__version__ = "0.1.0"

__all__ = ["Client", "HarbourmasterError", "__version__"]


def __getattr__(name: str) -> object:
    # The SDK pulls in the whole service stack; import it only when asked for.
    if name == "Client":
        from harbourmaster.client import Client

        return Client
    raise AttributeError(name)
