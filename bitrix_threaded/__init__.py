"""bitrix_threaded: a sync-native, thread-pool client for the Bitrix24 REST API.

``Bitrix`` is the entry point and ``AsyncBitrix`` its async facade on the same engine;
the exceptions, strategies and limiter pieces are exported for callers that catch,
choose or tune them.

The public surface is exactly ``__all__`` below, plus :mod:`bitrix_threaded.testing`
(the fake portal) and the ``bitrix-threaded`` command. Every other module (the runner,
driver, batch packing, transport, encoding...) is internal wiring whose names may
change in any release.
"""

import logging as _logging

from .aio import AsyncBitrix, BitrixAsync
from .aio_records import AsyncRecords
from .auth import TokenSet
from .client import Bitrix
from .clock import Clock, ManualClock, SystemClock
from .errors import (
    AccessDenied,
    AuthError,
    BatchError,
    BitrixError,
    Cancelled,
    CertificateFailed,
    ClientClosed,
    CommandFailure,
    ConnectionFailed,
    ExpiredToken,
    InsufficientScope,
    InvalidArgument,
    InvalidCredentials,
    InvalidResponse,
    InvalidToken,
    MethodNotFound,
    NotFound,
    OperationTimeLimit,
    OverloadLimit,
    PortalMoved,
    QueryLimitExceeded,
    RequestTimeout,
    ServerError,
    TransportError,
)
from .limiter import ConcurrencyGate, LeakyBucket, OperatingWindow
from .pagination import IdList, IdRanges, OffsetPages, Strategy
from .retry import RetryPolicy
from .shared_limits import SharedLimitsUnavailable
from .validation import BitrixWarning

from ._version import __version__

_logging.getLogger("bitrix_threaded").addHandler(_logging.NullHandler())

__all__ = [
    "AccessDenied",
    "AsyncBitrix",
    "AsyncRecords",
    "AuthError",
    "BatchError",
    "Bitrix",
    "BitrixAsync",
    "BitrixError",
    "BitrixWarning",
    "Cancelled",
    "CertificateFailed",
    "ClientClosed",
    "Clock",
    "CommandFailure",
    "ConcurrencyGate",
    "ConnectionFailed",
    "ExpiredToken",
    "IdList",
    "IdRanges",
    "InsufficientScope",
    "InvalidArgument",
    "InvalidCredentials",
    "InvalidResponse",
    "InvalidToken",
    "LeakyBucket",
    "ManualClock",
    "MethodNotFound",
    "NotFound",
    "OffsetPages",
    "OperatingWindow",
    "OperationTimeLimit",
    "OverloadLimit",
    "PortalMoved",
    "QueryLimitExceeded",
    "RequestTimeout",
    "RetryPolicy",
    "ServerError",
    "SharedLimitsUnavailable",
    "Strategy",
    "SystemClock",
    "TokenSet",
    "TransportError",
    "__version__",
]

# Public names report the package as their home (reprs, tracebacks, pickles, docs),
# not the internal module that happens to define them.
for _name in __all__:
    _value = globals()[_name]
    if isinstance(_value, type):
        _value.__module__ = __name__
del _name, _value
