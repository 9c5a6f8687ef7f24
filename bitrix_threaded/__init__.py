"""bitrix_threaded: a sync-native, thread-pool client for the Bitrix24 REST API.

``Bitrix`` is the entry point and ``AsyncBitrix`` its async facade on the same engine;
the exceptions, strategies and limiter pieces are exported for callers that catch,
choose or tune them.
"""

import logging

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
from .pagination import IdList, IdRanges, OffsetPages
from .retry import RetryPolicy
from .shared_limits import SharedLimitsUnavailable
from .validation import BitrixWarning

from ._version import __version__

logging.getLogger("bitrix_threaded").addHandler(logging.NullHandler())

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
    "SystemClock",
    "TokenSet",
    "TransportError",
    "__version__",
]
