"""Publish Python `logging` records to a Tailgate gateway, which streams them live to browsers. Each
record the gateway confirms is in the worker's history exactly once, across broken connections and
gateway restarts (see `handler`'s documentation).

    import logging
    from tailgate_logging import TailgateHandler

    handler = TailgateHandler("http://127.0.0.1:8080", worker="002050.SZ")
    logging.getLogger().addHandler(handler)
"""

from .handler import TailgateError, TailgateHandler, gateway_level, iso_timestamp

__all__ = ["TailgateHandler", "TailgateError", "gateway_level", "iso_timestamp"]
__version__ = "0.2.0"
