"""Publish Python `logging` records to a Tailgate gateway, which streams them live to browsers. Each
record the gateway confirms is in the worker's history exactly once, across broken connections, gateway
restarts and forks (see `handler`'s documentation).

    import logging
    from tailgate_logging import TailgateHandler

    handler = TailgateHandler("http://127.0.0.1:8080", worker="002050.SZ")
    logging.getLogger().addHandler(handler)

    # or, from the environment (TAILGATE_URL, TAILGATE_WORKER, TAILGATE_TOKEN):
    logging.getLogger().addHandler(TailgateHandler())
"""

from ._version import __version__
from .handler import (DEFAULT_URL, ENV_TOKEN, ENV_URL, ENV_WORKER, TailgateError, TailgateHandler, TokenSource,
                      gateway_level, iso_timestamp)

__all__ = ["TailgateHandler", "TailgateError", "TokenSource", "gateway_level", "iso_timestamp", "ENV_URL",
           "ENV_WORKER", "ENV_TOKEN", "DEFAULT_URL", "__version__"]
